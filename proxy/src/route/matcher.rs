//! Request matching, compiled once when config arrives: regexes are built and anchored then,
//! case folding decided then, so matching a request only compares.

use http::HeaderMap;
use regex::Regex;
use trellis_api::model::{self, StringMatch};

/// An Istio StringMatch ready to run. Regexes match the whole value, as RE2's FullMatch does.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Matcher {
    pub fn compile(m: &StringMatch, ignore_case: bool) -> Result<Matcher, regex::Error> {
        Ok(match m {
            StringMatch::Exact(s) if ignore_case => Matcher::Exact(s.to_ascii_lowercase()),
            StringMatch::Exact(s) => Matcher::Exact(s.clone()),
            StringMatch::Prefix(s) if ignore_case => Matcher::Prefix(s.to_ascii_lowercase()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatch::Regex(r) => {
                let flags = if ignore_case { "(?i)" } else { "" };
                Matcher::Regex(Regex::new(&format!("{flags}^(?:{r})$"))?)
            }
        })
    }

    /// Matches `value`; for case-insensitive matchers the caller passes the lower-cased value.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(s) => value.starts_with(s.as_str()),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

/// The parts of a request that rules look at.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub scheme: &'a str,
    pub authority: &'a str,
    pub headers: &'a HeaderMap,
    pub port: u16,
}

#[derive(Debug)]
struct HeaderCondition {
    name: http::HeaderName,
    /// `None`: presence is enough.
    value: Option<Matcher>,
}

impl HeaderCondition {
    fn holds(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        if values.peek().is_none() {
            return false;
        }
        match &self.value {
            None => true,
            Some(m) => values.any(|v| v.to_str().is_ok_and(|v| m.matches(v))),
        }
    }
}

/// One compiled `match` block.
#[derive(Debug)]
pub struct RequestMatcher {
    uri: Option<Matcher>,
    ignore_uri_case: bool,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<HeaderCondition>,
    without_headers: Vec<HeaderCondition>,
    query_params: Vec<(String, Option<Matcher>)>,
    port: Option<u16>,
    /// The literal prefix when `uri` was a prefix match, for prefix rewrites.
    pub uri_prefix: Option<String>,
}

impl RequestMatcher {
    pub fn compile(m: &model::RequestMatch) -> Result<RequestMatcher, String> {
        let compile = |sm: &Option<StringMatch>, ic: bool| {
            sm.as_ref()
                .map(|sm| Matcher::compile(sm, ic))
                .transpose()
                .map_err(|e| e.to_string())
        };
        let headers = |list: &[model::HeaderMatch]| -> Result<Vec<HeaderCondition>, String> {
            list.iter()
                .map(|h| {
                    Ok(HeaderCondition {
                        name: http::HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                            .map_err(|e| format!("header name {:?}: {e}", h.name))?,
                        value: h
                            .value
                            .as_ref()
                            .map(|v| Matcher::compile(v, false))
                            .transpose()
                            .map_err(|e| e.to_string())?,
                    })
                })
                .collect()
        };
        Ok(RequestMatcher {
            uri: compile(&m.uri, m.ignore_uri_case)?,
            ignore_uri_case: m.ignore_uri_case,
            scheme: compile(&m.scheme, false)?,
            method: compile(&m.method, false)?,
            authority: compile(&m.authority, false)?,
            headers: headers(&m.headers)?,
            without_headers: headers(&m.without_headers)?,
            query_params: m
                .query_params
                .iter()
                .map(|q| Ok((q.name.clone(), compile(&q.value, false)?)))
                .collect::<Result<_, String>>()?,
            port: m.port,
            uri_prefix: match &m.uri {
                Some(StringMatch::Prefix(p)) => Some(p.clone()),
                _ => None,
            },
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if self.port.is_some_and(|p| p != req.port) {
            return false;
        }
        if let Some(m) = &self.method
            && !m.matches(req.method)
        {
            return false;
        }
        if let Some(m) = &self.uri {
            let ok = if self.ignore_uri_case {
                m.matches(&req.path.to_ascii_lowercase())
            } else {
                m.matches(req.path)
            };
            if !ok {
                return false;
            }
        }
        if self.scheme.as_ref().is_some_and(|m| !m.matches(req.scheme)) {
            return false;
        }
        if self
            .authority
            .as_ref()
            .is_some_and(|m| !m.matches(req.authority))
        {
            return false;
        }
        if !self.headers.iter().all(|h| h.holds(req.headers)) {
            return false;
        }
        if self.without_headers.iter().any(|h| h.holds(req.headers)) {
            return false;
        }
        self.query_params.iter().all(|(name, m)| {
            query_values(req.query, name).any(|v| m.as_ref().is_none_or(|m| m.matches(&v)))
        })
    }
}

/// Values of the query parameter `name`, percent-decoded.
pub fn query_values<'a>(
    query: Option<&'a str>,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{HeaderMatch, QueryParamMatch, RequestMatch};

    fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path,
            query,
            scheme: "http",
            authority: "svc",
            headers,
            port: 80,
        }
    }

    #[test]
    fn regex_matches_whole_value_only() {
        let m = Matcher::compile(&StringMatch::Regex("/api/v[0-9]+".into()), false).unwrap();
        assert!(m.matches("/api/v12"));
        assert!(!m.matches("/api/v12/x"));
        assert!(!m.matches("x/api/v1"));
    }

    #[test]
    fn ignore_uri_case_applies_to_uri() {
        let rm = RequestMatcher::compile(&RequestMatch {
            uri: Some(StringMatch::Prefix("/Reviews".into())),
            ignore_uri_case: true,
            ..Default::default()
        })
        .unwrap();
        let h = HeaderMap::new();
        assert!(rm.matches(&view("/REVIEWS/1", None, &h)));
        assert!(!rm.matches(&view("/ratings", None, &h)));
    }

    #[test]
    fn headers_without_headers_and_query() {
        let rm = RequestMatcher::compile(&RequestMatch {
            headers: vec![HeaderMatch {
                name: "end-user".into(),
                value: Some(StringMatch::Exact("jason".into())),
            }],
            without_headers: vec![HeaderMatch {
                name: "x-canary".into(),
                value: None,
            }],
            query_params: vec![QueryParamMatch {
                name: "v".into(),
                value: Some(StringMatch::Prefix("2".into())),
            }],
            ..Default::default()
        })
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("end-user", "jason".parse().unwrap());
        assert!(rm.matches(&view("/", Some("a=1&v=2x"), &h)));
        assert!(!rm.matches(&view("/", Some("a=1&v=1"), &h)));
        assert!(!rm.matches(&view("/", None, &h)));
        h.insert("x-canary", "1".parse().unwrap());
        assert!(!rm.matches(&view("/", Some("v=2"), &h)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
        let vals: Vec<_> = query_values(Some("x=1&na%6De=v%2F1&name"), "name").collect();
        assert_eq!(vals, vec!["v/1".to_string(), String::new()]);
    }
}
