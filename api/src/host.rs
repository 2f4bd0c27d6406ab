//! Host names as Istio reads them: short names relative to a namespace, `*.` wildcards, and the
//! DNS rules every host must follow.

/// Kubernetes cluster domain; short names expand to `name.namespace.svc.<this>`.
pub const DOMAIN_SUFFIX: &str = "cluster.local";

/// Fully qualifies a VirtualService/DestinationRule host the way Istio does: a name without dots
/// is a Kubernetes service in the resource's namespace; anything else is taken as written.
pub fn resolve(host: &str, namespace: &str) -> String {
    let host = normalize(host);
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        host
    } else {
        format!("{host}.{namespace}.svc.{DOMAIN_SUFFIX}")
    }
}

/// Lower case, without a trailing dot.
pub fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// How specifically `pattern` (possibly `*` or `*.suffix`) matches `host` (which may itself be a
/// wildcard): `None` when it does not, larger is more specific, an exact match beats any wildcard.
pub fn match_specificity(pattern: &str, host: &str) -> Option<usize> {
    if pattern == host {
        return Some(usize::MAX);
    }
    if pattern == "*" {
        return Some(0);
    }
    let suffix = pattern.strip_prefix('*')?;
    // `*.example.com` matches `a.example.com` and the narrower wildcard `*.a.example.com`.
    let host_rest = host.strip_prefix('*').unwrap_or(host);
    let narrower = host_rest.len() > suffix.len() && host_rest.ends_with(suffix);
    narrower.then_some(pattern.len())
}

/// A DNS-1123 label: lower-case alphanumerics and `-`, at most 63, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain (Kubernetes object names): dot-separated labels, at most 253.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Checks a host that may start with the `*.` wildcard (or be `*` alone). Wildcards anywhere else,
/// upper case, empty labels and an all-numeric top-level label are rejected.
pub fn validate_wildcard_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host must not be empty".into());
    }
    if host.len() > 255 {
        return Err(format!("host `{host}` is longer than 255 characters"));
    }
    if host == "*" {
        return Ok(());
    }
    let rest = host.strip_prefix("*.").unwrap_or(host);
    validate_labels(host, rest)
}

/// Checks a host without wildcards.
pub fn validate_fqdn(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host must not be empty".into());
    }
    if host.len() > 255 {
        return Err(format!("host `{host}` is longer than 255 characters"));
    }
    validate_labels(host, host)
}

fn validate_labels(host: &str, labels: &str) -> Result<(), String> {
    if labels.contains('*') {
        return Err(format!(
            "host `{host}` is invalid: a wildcard is only allowed as a leading `*.`"
        ));
    }
    let labels = labels.strip_suffix('.').unwrap_or(labels);
    let parts: Vec<&str> = labels.split('.').collect();
    if let Some(last) = parts.last()
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "host `{host}` is invalid: the top-level label `{last}` cannot be all numeric"
        ));
    }
    for label in parts {
        if !is_dns1123_label(label) {
            return Err(format!(
                "host `{host}` is invalid: label `{label}` must be lower-case letters, digits and `-` (at most 63)"
            ));
        }
    }
    Ok(())
}

/// The short names a proxy in `proxy_namespace` may use for `host` (besides the host itself), as
/// Istio generates them: for `reviews.default.svc.cluster.local` that is `reviews`, `reviews.default`
/// and `reviews.default.svc` from the same namespace, and `reviews.default`, `reviews.default.svc`
/// from any other.
pub fn short_names(host: &str, proxy_namespace: &str) -> Vec<String> {
    let cluster_suffix = format!(".svc.{DOMAIN_SUFFIX}");
    let Some(name_ns) = host.strip_suffix(&cluster_suffix) else {
        return Vec::new();
    };
    let Some((name, namespace)) = name_ns.split_once('.') else {
        return Vec::new();
    };
    if name.is_empty() || namespace.is_empty() || namespace.contains('.') || name.contains('*') {
        return Vec::new();
    }
    let mut names = Vec::new();
    if namespace == proxy_namespace {
        names.push(name.to_string());
    }
    names.push(format!("{name}.{namespace}"));
    names.push(format!("{name}.{namespace}.svc"));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_short_names_in_the_resource_namespace() {
        assert_eq!(
            resolve("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(resolve("Reviews", "prod"), "reviews.prod.svc.cluster.local");
        assert_eq!(resolve("reviews.prod", "default"), "reviews.prod");
        assert_eq!(resolve("api.example.com.", "default"), "api.example.com");
        assert_eq!(resolve("*.example.com", "default"), "*.example.com");
        assert_eq!(resolve("*", "default"), "*");
        assert_eq!(resolve("10.0.0.1", "default"), "10.0.0.1");
    }

    #[test]
    fn wildcard_matching() {
        assert_eq!(match_specificity("a.b.com", "a.b.com"), Some(usize::MAX));
        assert_eq!(match_specificity("*.b.com", "a.b.com"), Some(7));
        assert_eq!(match_specificity("*.com", "a.b.com"), Some(5));
        assert_eq!(match_specificity("*.b.com", "b.com"), None);
        assert_eq!(match_specificity("*.b.com", "xb.com"), None);
        assert_eq!(match_specificity("*.com", "*.b.com"), Some(5));
        assert_eq!(match_specificity("*.b.com", "*.com"), None);
        assert_eq!(match_specificity("*", "x.y"), Some(0));
        assert_eq!(match_specificity("a.b.com", "*.b.com"), None);
    }

    #[test]
    fn domain_validation() {
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("*.example.com").is_ok());
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("api.example.com.").is_ok());
        assert!(validate_wildcard_domain("a.*.com").is_err());
        assert!(validate_wildcard_domain("*foo.com").is_err());
        assert!(validate_wildcard_domain("Foo.com").is_err());
        assert!(validate_wildcard_domain("foo..com").is_err());
        assert!(validate_wildcard_domain("foo.123").is_err());
        assert!(validate_wildcard_domain("").is_err());
        assert!(validate_fqdn("*.example.com").is_err());
        assert!(is_dns1123_subdomain("my-app.v1"));
        assert!(!is_dns1123_label("my.app"));
    }

    #[test]
    fn short_names_depend_on_the_proxy_namespace() {
        let host = "reviews.default.svc.cluster.local";
        assert_eq!(
            short_names(host, "default"),
            vec!["reviews", "reviews.default", "reviews.default.svc"]
        );
        assert_eq!(
            short_names(host, "other"),
            vec!["reviews.default", "reviews.default.svc"]
        );
        assert!(short_names("api.example.com", "default").is_empty());
    }
}
