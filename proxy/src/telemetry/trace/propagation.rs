//! Reading and writing trace context headers: W3C Trace Context (`traceparent`, `tracestate`) and
//! Zipkin B3, both as multiple headers (`x-b3-*`) and as the single `b3` header.
//!
//! Invalid headers (all-zero ids, bad or upper-case hex, wrong lengths, an unknown layout) are
//! ignored as the W3C spec asks: the request then counts as carrying no context of that kind.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const B3: HeaderName = HeaderName::from_static("b3");
pub const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The trace context a request arrived with. Empty (`Default`) when it carried none that is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Absent when no ids came (or only a sampling decision, e.g. `b3: 0`).
    pub trace_id: Option<u128>,
    /// The caller's span: the parent of the span this proxy starts.
    pub span_id: Option<u64>,
    /// The caller's sampling decision; `None` defers it to this proxy.
    pub sampled: Option<bool>,
    /// B3 debug (`x-b3-flags: 1`, `b3: ...-d`): sample, and say so downstream.
    pub debug: bool,
    /// The W3C `tracestate`, kept only with a valid `traceparent`.
    pub trace_state: Option<HeaderValue>,
    /// The caller used the single `b3` header: write it back in that form too.
    pub b3_single: bool,
}

/// What the next hop is told: this proxy's span as the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub trace_id: u128,
    pub span_id: u64,
    /// This span's own parent (for `x-b3-parentspanid`).
    pub parent_span_id: Option<u64>,
    pub sampled: bool,
    pub debug: bool,
    pub trace_state: Option<&'a HeaderValue>,
    pub b3_single: bool,
}

/// Reads the request's trace context: W3C first, then single `b3`, then `x-b3-*`.
pub fn extract(headers: &HeaderMap) -> Incoming {
    extract_known(headers, carries_context(headers))
}

/// [`extract`] when the caller already knows whether any context header is present
/// (`carried`, from [`carries_context`]), so the names are scanned once per request, not twice.
pub(super) fn extract_known(headers: &HeaderMap, carried: bool) -> Incoming {
    if !carried {
        return Incoming::default();
    }
    if let Some(ctx) = w3c(headers) {
        return ctx;
    }
    if let Some(ctx) = single_value(headers, &B3).and_then(b3_single) {
        return ctx;
    }
    b3_multi(headers).unwrap_or_default()
}

/// Replaces the request's trace context headers with `out`: `traceparent` (and `tracestate` as
/// it came) and B3 always, B3 as the single `b3` header when the caller used it.
///
/// B3 carries the ids only for a sampled trace; an unsampled one gets B3's bare "deny" decision
/// (`x-b3-sampled: 0`, `b3: 0`), which is all a B3 tracer needs to record nothing, while
/// `traceparent` always carries the ids. That keeps the 99% of requests that are not sampled
/// (at the default 1%) two headers lighter.
///
/// Runs for every request, so it is frugal: the ids are written once into one buffer that the
/// header values share, and headers are only removed when the request came with some and nothing
/// replaces them.
pub fn inject(headers: &mut HeaderMap, out: &Outgoing<'_>) {
    inject_known(headers, out, carries_context(headers));
}

/// [`inject`] when the caller already knows whether the request came with context headers
/// (`stale`, from [`carries_context`]).
pub(super) fn inject_known(headers: &mut HeaderMap, out: &Outgoing<'_>, stale: bool) {
    let b3_ids = out.sampled || out.debug;
    // `00-<trace>-<span>-<flags>` then the 16 hex digits of the parent span id; the B3 values are
    // slices of it.
    let mut line = BytesMut::zeroed(TRACEPARENT_LEN + 16);
    line[..3].copy_from_slice(b"00-");
    write_hex(&mut line[3..35], out.trace_id);
    line[35] = b'-';
    write_hex(&mut line[36..52], u128::from(out.span_id));
    line[52..55].copy_from_slice(if out.sampled { b"-01" } else { b"-00" });
    let parent_span_id = out.parent_span_id.filter(|_| b3_ids);
    if let Some(parent) = parent_span_id {
        write_hex(&mut line[55..], u128::from(parent));
    }
    let line = line.freeze();
    let (trace, span, parent) = (3..35, 36..52, 55..71);
    headers.insert(TRACEPARENT, value(line.slice(..TRACEPARENT_LEN)));
    match out.trace_state {
        Some(state) => headers.insert(TRACESTATE, state.clone()),
        None if stale => headers.remove(&TRACESTATE),
        None => None,
    };
    if out.b3_single {
        let single = if b3_ids {
            let decision: &[u8] = if out.debug { b"d" } else { b"1" };
            let mut single = Vec::with_capacity(68);
            for part in [
                &line[trace.clone()],
                b"-",
                &line[span.clone()],
                b"-",
                decision,
            ] {
                single.extend_from_slice(part);
            }
            if parent_span_id.is_some() {
                single.push(b'-');
                single.extend_from_slice(&line[parent.clone()]);
            }
            value(Bytes::from(single))
        } else {
            HeaderValue::from_static("0")
        };
        headers.insert(B3, single);
    } else if stale {
        headers.remove(&B3);
    }
    if b3_ids {
        headers.insert(B3_TRACE_ID, value(line.slice(trace)));
        headers.insert(B3_SPAN_ID, value(line.slice(span)));
    } else if stale {
        headers.remove(&B3_TRACE_ID);
        headers.remove(&B3_SPAN_ID);
    }
    match parent_span_id {
        Some(_) => {
            headers.insert(B3_PARENT_SPAN_ID, value(line.slice(parent)));
        }
        None if stale => {
            headers.remove(&B3_PARENT_SPAN_ID);
        }
        None => {}
    }
    // B3: debug implies an accept decision, so `x-b3-sampled` is not sent with it.
    if out.debug {
        headers.remove(&B3_SAMPLED);
        headers.insert(B3_FLAGS, HeaderValue::from_static("1"));
    } else {
        if stale {
            headers.remove(&B3_FLAGS);
        }
        let sampled = if out.sampled { "1" } else { "0" };
        headers.insert(B3_SAMPLED, HeaderValue::from_static(sampled));
    }
}

/// Whether any trace context header is present: one pass over the names, much cheaper than
/// looking up each of the eight when (as on most first hops) there are none.
pub(super) fn carries_context(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("x-b3-") || name == "traceparent" || name == "tracestate" || name == "b3"
    })
}

/// Length of a version-00 `traceparent` value.
const TRACEPARENT_LEN: usize = 55;

/// A header value holding ids unique to this request. Marked sensitive so HTTP/2 sends it as a
/// never-indexed literal: entering it in the HPACK tables would only evict the values that do
/// repeat (peer metadata, user agent) and cost both proxies a table update per request.
fn value(bytes: Bytes) -> HeaderValue {
    let mut value = HeaderValue::from_maybe_shared(bytes)
        .expect("hex digits and dashes are a valid header value");
    value.set_sensitive(true);
    value
}

/// `id`'s low `out.len() * 4` bits as lower-case hex, zero-padded, into `out`.
fn write_hex(out: &mut [u8], id: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((id >> ((n - 1 - i) * 4)) & 0xf) as usize];
    }
}

/// `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
fn w3c(headers: &HeaderMap) -> Option<Incoming> {
    let text = single_value(headers, &TRACEPARENT)?.trim();
    let version = text.get(..2)?;
    let (trace, span, flags) = match version {
        "ff" => return None,
        // Version 00 has exactly four fields.
        "00" if text.len() != 55 => return None,
        // A later version may append fields after a dash; its first four are read as 00's.
        _ if text.len() > 55 && text.as_bytes()[55] != b'-' => return None,
        _ => {
            let mut parts = text.get(..55)?.split('-');
            let (v, t, s, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if !is_lower_hex(v, 2) || !is_lower_hex(f, 2) {
                return None;
            }
            (t, s, f)
        }
    };
    let trace_id = parse_trace_id(trace, &[32])?;
    let span_id = parse_span_id(span)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Incoming {
        trace_id: Some(trace_id),
        span_id: Some(span_id),
        sampled: Some(flags & 1 == 1),
        debug: false,
        trace_state: trace_state(headers),
        b3_single: false,
    })
}

/// `tracestate` as it came; several headers are one comma-joined list (RFC 9110).
fn trace_state(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&TRACESTATE).iter();
    let first = values.next()?;
    let rest: Vec<&HeaderValue> = values.collect();
    if rest.is_empty() {
        return (!first.is_empty()).then(|| first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for v in rest {
        joined.push(b',');
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`, or only a decision: `0`, `1`, `d`.
fn b3_single(text: &str) -> Option<Incoming> {
    let text = text.trim();
    let decision = |d: &str| match d {
        "0" => Some((Some(false), false)),
        "1" => Some((Some(true), false)),
        "d" => Some((Some(true), true)),
        _ => None,
    };
    let parts: Vec<&str> = text.split('-').collect();
    let (sampled, debug) = match parts.len() {
        1 => {
            let (sampled, debug) = decision(parts[0])?;
            return Some(Incoming {
                sampled,
                debug,
                b3_single: true,
                ..Incoming::default()
            });
        }
        2 => (None, false),
        3 | 4 => decision(parts[2])?,
        _ => return None,
    };
    if parts.len() == 4 {
        // The parent is the caller's business, but a malformed one makes the header invalid.
        parse_span_id(parts[3])?;
    }
    Some(Incoming {
        trace_id: Some(parse_trace_id(parts[0], &[16, 32])?),
        span_id: Some(parse_span_id(parts[1])?),
        sampled,
        debug,
        trace_state: None,
        b3_single: true,
    })
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`; ids come both or not at all.
fn b3_multi(headers: &HeaderMap) -> Option<Incoming> {
    let debug = single_value(headers, &B3_FLAGS).is_some_and(|f| f.trim() == "1");
    let sampled = match single_value(headers, &B3_SAMPLED).map(str::trim) {
        _ if debug => Some(true),
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    let ids = match (
        single_value(headers, &B3_TRACE_ID),
        single_value(headers, &B3_SPAN_ID),
    ) {
        (Some(t), Some(s)) => Some((parse_trace_id(t.trim(), &[16, 32]), parse_span_id(s.trim()))),
        _ => None,
    };
    match ids {
        Some((Some(trace_id), Some(span_id))) => Some(Incoming {
            trace_id: Some(trace_id),
            span_id: Some(span_id),
            sampled,
            debug,
            ..Incoming::default()
        }),
        // Invalid ids: the whole context is ignored, its decision with it.
        Some(_) => None,
        None if sampled.is_some() => Some(Incoming {
            sampled,
            debug,
            ..Incoming::default()
        }),
        None => None,
    }
}

/// The header's value when it appears exactly once and is text.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    v.to_str().ok()
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A trace id of one of the allowed lengths (16 hex: a 64-bit B3 id, padded), never all zeros.
fn parse_trace_id(s: &str, lengths: &[usize]) -> Option<u128> {
    if !lengths.iter().any(|&len| is_lower_hex(s, len)) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|&id| id != 0)
}

fn parse_span_id(s: &str) -> Option<u64> {
    if !is_lower_hex(s, 16) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|&id| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn reads_a_w3c_traceparent_and_its_tracestate() {
        let h = headers(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ]);
        let ctx = extract(&h);
        assert_eq!(ctx.trace_id, Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(ctx.span_id, Some(0x00f067aa0ba902b7));
        assert_eq!(ctx.sampled, Some(true));
        assert_eq!(
            ctx.trace_state.unwrap(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        let not_sampled = extract(&headers(&[(
            "traceparent",
            &format!("00-{TRACE}-{SPAN}-00"),
        )]));
        assert_eq!(not_sampled.sampled, Some(false));
    }

    #[test]
    fn future_w3c_versions_are_read_by_their_first_fields() {
        let ctx = extract(&headers(&[(
            "traceparent",
            &format!("cc-{TRACE}-{SPAN}-01-what-the-future-holds"),
        )]));
        assert_eq!(ctx.span_id, Some(0x00f067aa0ba902b7));
        // Version 00 with extra fields is invalid.
        let ctx = extract(&headers(&[(
            "traceparent",
            &format!("00-{TRACE}-{SPAN}-01-extra"),
        )]));
        assert_eq!(ctx, Incoming::default());
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        let zero_trace = "0".repeat(32);
        let zero_span = "0".repeat(16);
        let upper = TRACE.to_ascii_uppercase();
        for bad in [
            format!("00-{zero_trace}-{SPAN}-01"),
            format!("00-{TRACE}-{zero_span}-01"),
            format!("00-{upper}-{SPAN}-01"),
            format!("00-{}-{SPAN}-01", &TRACE[1..]),
            format!("00-{TRACE}-{}-01", &SPAN[1..]),
            format!("00-{TRACE}x-{SPAN}-01")[..55].to_string(),
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-0g"),
            format!("00_{TRACE}_{SPAN}_01"),
            "00-".into(),
            String::new(),
            "é".into(),
        ] {
            let h = headers(&[("traceparent", &bad), ("tracestate", "a=b")]);
            assert_eq!(extract(&h), Incoming::default(), "{bad:?}");
        }
        // Two traceparents: ambiguous, ignored.
        let two = headers(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("traceparent", &format!("00-{TRACE}-{SPAN}-00")),
        ]);
        assert_eq!(extract(&two), Incoming::default());
    }

    #[test]
    fn reads_b3_multi_headers() {
        let h = headers(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-sampled", "0"),
        ]);
        let ctx = extract(&h);
        assert_eq!(ctx.trace_id, Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(ctx.span_id, Some(0x00f067aa0ba902b7));
        assert_eq!(ctx.sampled, Some(false));
        // 64-bit trace ids are padded; no decision defers it.
        let short = extract(&headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", SPAN),
        ]));
        assert_eq!(short.trace_id, Some(0xa3ce929d0e0e4736));
        assert_eq!(short.sampled, None);
        // Debug forces sampling.
        let debug = extract(&headers(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-flags", "1"),
        ]));
        assert!(debug.debug && debug.sampled == Some(true));
        // A decision alone.
        let deny = extract(&headers(&[("x-b3-sampled", "0")]));
        assert_eq!((deny.trace_id, deny.sampled), (None, Some(false)));
    }

    #[test]
    fn invalid_b3_multi_headers_are_ignored() {
        for (t, s) in [
            ("0".repeat(32), SPAN.to_string()),
            (TRACE.to_string(), "0".repeat(16)),
            (TRACE[..20].to_string(), SPAN.to_string()),
            (TRACE.to_string(), "xyz".to_string()),
        ] {
            let h = headers(&[
                ("x-b3-traceid", &t),
                ("x-b3-spanid", &s),
                ("x-b3-sampled", "1"),
            ]);
            assert_eq!(extract(&h), Incoming::default(), "{t} {s}");
        }
    }

    #[test]
    fn reads_the_single_b3_header() {
        let ctx = extract(&headers(&[(
            "b3",
            &format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"),
        )]));
        assert_eq!(ctx.trace_id, Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(ctx.span_id, Some(0x00f067aa0ba902b7));
        assert_eq!(ctx.sampled, Some(true));
        assert!(ctx.b3_single);
        let deferred = extract(&headers(&[("b3", &format!("{TRACE}-{SPAN}"))]));
        assert_eq!(deferred.sampled, None);
        let debug = extract(&headers(&[("b3", &format!("{TRACE}-{SPAN}-d"))]));
        assert!(debug.debug);
        let deny = extract(&headers(&[("b3", "0")]));
        assert_eq!((deny.trace_id, deny.sampled), (None, Some(false)));
        for bad in [
            format!("{TRACE}-{SPAN}-2"),
            format!("{TRACE}-{SPAN}-1-zz"),
            TRACE.to_string(),
            format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90-x"),
            "x".into(),
        ] {
            assert_eq!(
                extract(&headers(&[("b3", &bad)])),
                Incoming::default(),
                "{bad}"
            );
        }
    }

    #[test]
    fn w3c_wins_over_b3() {
        let h = headers(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("x-b3-traceid", "1111111111111111"),
            ("x-b3-spanid", "2222222222222222"),
        ]);
        assert_eq!(extract(&h).span_id, Some(0x00f067aa0ba902b7));
        // An invalid traceparent falls back to B3.
        let h = headers(&[
            ("traceparent", "garbage"),
            ("x-b3-traceid", "1111111111111111"),
            ("x-b3-spanid", "2222222222222222"),
        ]);
        assert_eq!(extract(&h).span_id, Some(0x2222222222222222));
    }

    #[test]
    fn writes_both_formats_with_this_span_as_parent() {
        let mut h = headers(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-b3-sampled", "1"),
            ("x-b3-flags", "0"),
        ]);
        let state = trace_state(&h);
        inject(
            &mut h,
            &Outgoing {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0xb7ad6b7169203331,
                parent_span_id: Some(0x00f067aa0ba902b7),
                sampled: true,
                debug: false,
                trace_state: state.as_ref(),
                b3_single: false,
            },
        );
        assert_eq!(h["traceparent"], format!("00-{TRACE}-b7ad6b7169203331-01"));
        assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(h["x-b3-traceid"], TRACE);
        assert_eq!(h["x-b3-spanid"], "b7ad6b7169203331");
        assert_eq!(h["x-b3-parentspanid"], SPAN);
        assert_eq!(h["x-b3-sampled"], "1");
        assert!(h.get("x-b3-flags").is_none() && h.get("b3").is_none());
        // What was written reads back as the new parent.
        let again = extract(&h);
        assert_eq!(again.span_id, Some(0xb7ad6b7169203331));
        assert_eq!(again.trace_id, Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
    }

    #[test]
    fn writes_not_sampled_debug_and_single_b3() {
        let mut h = headers(&[("b3", "0")]);
        let out = Outgoing {
            trace_id: 1,
            span_id: 2,
            parent_span_id: None,
            sampled: false,
            debug: false,
            trace_state: None,
            b3_single: true,
        };
        inject(&mut h, &out);
        assert_eq!(h["traceparent"], format!("00-{:032x}-{:016x}-00", 1, 2));
        // Not sampled: B3 gets the bare decision, W3C the ids.
        assert_eq!(h["b3"], "0");
        assert_eq!(h["x-b3-sampled"], "0");
        for gone in [
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-parentspanid",
            "tracestate",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        // A sampled context continued in the single header, then not sampled again: the ids
        // written for the first go.
        inject(
            &mut h,
            &Outgoing {
                sampled: true,
                parent_span_id: Some(3),
                ..out
            },
        );
        assert_eq!(h["b3"], format!("{:032x}-{:016x}-1-{:016x}", 1, 2, 3));
        assert_eq!(h["x-b3-traceid"], format!("{:032x}", 1));
        assert_eq!(h["x-b3-parentspanid"], format!("{:016x}", 3));
        inject(
            &mut h,
            &Outgoing {
                parent_span_id: Some(3),
                ..out
            },
        );
        assert_eq!(h["b3"], "0");
        assert!(h.get("x-b3-traceid").is_none() && h.get("x-b3-parentspanid").is_none());
        inject(
            &mut h,
            &Outgoing {
                sampled: true,
                debug: true,
                parent_span_id: Some(3),
                ..out
            },
        );
        assert_eq!(h["b3"], format!("{:032x}-{:016x}-d-{:016x}", 1, 2, 3));
        assert_eq!(h["x-b3-flags"], "1");
        assert!(h.get("x-b3-sampled").is_none());
    }
}
