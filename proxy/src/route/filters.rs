//! What a route does to a request and its response besides choosing where it goes: header
//! operations, rewrites, redirects and CORS, each compiled when config arrives.

use super::matcher::Matcher;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use regex::Regex;
use trellis_api::model;

/// Compiled `headers` operations for one direction.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn compile(m: &model::HeaderMutation) -> Result<HeaderOps, String> {
        let pair = |(k, v): &(String, String)| -> Result<(HeaderName, HeaderValue), String> {
            Ok((
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("bad header name {k:?}"))?,
                HeaderValue::from_str(v).map_err(|_| format!("bad value for header {k:?}"))?,
            ))
        };
        Ok(HeaderOps {
            set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|k| {
                    HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| format!("bad header name {k:?}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (k, v) in &self.set {
            headers.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.add {
            headers.append(k.clone(), v.clone());
        }
        for k in &self.remove {
            headers.remove(k);
        }
    }
}

/// Request and response header operations of a route or destination.
#[derive(Debug, Default, Clone)]
pub struct HeaderRules {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

impl HeaderRules {
    pub fn compile(m: &model::HeaderOperations) -> Result<HeaderRules, String> {
        Ok(HeaderRules {
            request: HeaderOps::compile(&m.request)?,
            response: HeaderOps::compile(&m.response)?,
        })
    }
}

/// Compiled `rewrite`.
#[derive(Debug)]
pub struct Rewrite {
    uri: Option<String>,
    regex: Option<(Regex, String)>,
    pub authority: Option<HeaderValue>,
}

impl Rewrite {
    pub fn compile(m: &model::Rewrite) -> Result<Rewrite, String> {
        Ok(Rewrite {
            uri: m.uri.clone(),
            regex: m
                .uri_regex
                .as_ref()
                .map(|r| {
                    Ok::<_, String>((
                        Regex::new(&r.pattern).map_err(|e| e.to_string())?,
                        regex_replacement(&r.replacement),
                    ))
                })
                .transpose()?,
            authority: m
                .authority
                .as_ref()
                .map(|a| HeaderValue::from_str(a).map_err(|_| format!("bad authority {a:?}")))
                .transpose()?,
        })
    }

    /// The new path for `path` (without query); `matched_prefix` is the rule's uri prefix when it
    /// matched by prefix, which Istio replaces instead of the whole path.
    pub fn path(&self, path: &str, matched_prefix: Option<&str>) -> Option<String> {
        if let Some(uri) = &self.uri {
            return Some(match matched_prefix {
                Some(prefix) if path.len() >= prefix.len() => {
                    let rest = &path[prefix.len()..];
                    // "/v1/" -> "/" turning "/v1/x" into "//x" is avoided as Envoy does.
                    if uri.ends_with('/') && rest.starts_with('/') {
                        format!("{uri}{}", &rest[1..])
                    } else {
                        format!("{uri}{rest}")
                    }
                }
                _ => uri.clone(),
            });
        }
        self.regex
            .as_ref()
            .map(|(re, rep)| re.replace_all(path, rep.as_str()).into_owned())
    }
}

/// Istio (RE2) writes groups as `\1`; the regex crate as `${1}`.
fn regex_replacement(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len());
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(|d| d.is_ascii_digit()) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Builds a redirect response. `scheme`, `host` and `path_and_query` describe the request.
pub fn redirect(
    r: &model::Redirect,
    scheme: &str,
    host: &str,
    port: Option<u16>,
    path_and_query: &str,
) -> Response<crate::body::ProxyBody> {
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let host = r.authority.as_deref().unwrap_or(host);
    let port = r.port.or(if r.authority.is_some() { None } else { port });
    let default_port = matches!((scheme, port), ("http", Some(80)) | ("https", Some(443)));
    let authority = match port {
        Some(p) if !default_port && !host.contains(':') => format!("{host}:{p}"),
        _ => host.to_string(),
    };
    let path = match &r.uri {
        Some(uri) => uri.clone(),
        None => path_and_query.to_string(),
    };
    let location = format!("{scheme}://{authority}{path}");
    let status = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// Compiled `corsPolicy`.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<Matcher>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    allow_credentials: bool,
}

impl Cors {
    pub fn compile(c: &model::CorsPolicy) -> Result<Cors, String> {
        let join = |v: &[String]| {
            (!v.is_empty())
                .then(|| HeaderValue::from_str(&v.join(",")))
                .transpose()
                .map_err(|_| "bad CORS header value".to_string())
        };
        Ok(Cors {
            origins: c
                .allow_origins
                .iter()
                .map(|o| Matcher::compile(o, false).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            allow_methods: join(&c.allow_methods)?,
            allow_headers: join(&c.allow_headers)?,
            expose_headers: join(&c.expose_headers)?,
            max_age: c.max_age_secs.map(HeaderValue::from),
            allow_credentials: c.allow_credentials.unwrap_or(false),
        })
    }

    /// The request's Origin when the policy allows it.
    pub fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(http::header::ORIGIN)?;
        let s = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|m| m.matches(s) || matches!(m, Matcher::Exact(e) if e == "*"))
            .then_some(origin)
    }

    /// A preflight (`OPTIONS` with `Access-Control-Request-Method`) answered by the proxy itself.
    pub fn preflight(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Response<crate::body::ProxyBody>> {
        if method != Method::OPTIONS
            || !headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let origin = self.allowed_origin(headers)?.clone();
        let mut resp = Response::new(crate::body::empty());
        let h = resp.headers_mut();
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Some(v) = &self.allow_methods {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
        }
        if let Some(v) = &self.allow_headers {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        if let Some(v) = &self.max_age {
            h.insert(http::header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if self.allow_credentials {
            h.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Some(resp)
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn decorate(&self, origin: Option<HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = origin else { return };
        response.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Some(v) = &self.expose_headers {
            response.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
        if self.allow_credentials {
            response.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrite_replaces_only_the_prefix() {
        let rw = Rewrite::compile(&model::Rewrite {
            uri: Some("/v2".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(rw.path("/v1/books/1", Some("/v1")).unwrap(), "/v2/books/1");
        assert_eq!(rw.path("/anything", None).unwrap(), "/v2");
        let rw = Rewrite::compile(&model::Rewrite {
            uri: Some("/".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(rw.path("/api/x", Some("/api/")).unwrap(), "/x");
        assert_eq!(rw.path("/api/x", Some("/api")).unwrap(), "/x");
    }

    #[test]
    fn regex_rewrite_uses_re2_groups() {
        let rw = Rewrite::compile(&model::Rewrite {
            uri_regex: Some(model::RegexRewrite {
                pattern: "^/service/([^/]+)(/.*)$".into(),
                replacement: "\\2/instance/\\1".into(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            rw.path("/service/foo/v1/api", None).unwrap(),
            "/v1/api/instance/foo"
        );
    }

    #[test]
    fn redirect_location() {
        let r = model::Redirect {
            uri: Some("/v1/bookRatings".into()),
            authority: Some("newratings.default.svc.cluster.local".into()),
            code: 301,
            ..Default::default()
        };
        let resp = redirect(&r, "http", "ratings", Some(9080), "/v1/getProductRatings");
        assert_eq!(resp.status(), 301);
        assert_eq!(
            resp.headers()["location"],
            "http://newratings.default.svc.cluster.local/v1/bookRatings"
        );
    }
}
