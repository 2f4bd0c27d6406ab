//! Envoy's response flags: the short codes operators already know from Istio's access logs and
//! the `response_flags` metric label.

use std::fmt;

/// A set of response flags, printed comma-separated in Envoy's order, `-` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u16);

macro_rules! flags {
    ($($name:ident = $bit:expr, $code:literal, $doc:literal;)*) => {
        impl ResponseFlags {
            $(#[doc = $doc] pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $code)),*];
        }
    };
}

flags! {
    NO_HEALTHY_UPSTREAM = 0, "UH", "No healthy upstream endpoint.";
    UPSTREAM_CONNECTION_FAILURE = 1, "UF", "Connecting to the upstream failed.";
    UPSTREAM_OVERFLOW = 2, "UO", "A circuit breaker (connection pool limit) refused the request.";
    NO_ROUTE = 3, "NR", "No route or virtual host matched.";
    UPSTREAM_REQUEST_TIMEOUT = 4, "UT", "The upstream did not answer within the timeout.";
    UPSTREAM_CONNECTION_TERMINATION = 5, "UC", "The upstream closed or reset the connection.";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 6, "URX", "Retries were exhausted.";
    DELAY_INJECTED = 7, "DI", "A fault delay was injected.";
    FAULT_INJECTED = 8, "FI", "A fault abort was injected.";
    DOWNSTREAM_CONNECTION_TERMINATION = 9, "DC", "The client went away before the response ended.";
    UPSTREAM_RESET = 10, "UR", "The upstream stream was reset.";
    NO_CLUSTER_FOUND = 11, "NC", "The route named a cluster that does not exist.";
    RATE_LIMITED = 12, "RL", "A local rate limit refused the request (429).";
}

impl ResponseFlags {
    pub const NONE: ResponseFlags = ResponseFlags(0);

    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, code) in Self::ALL {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(code)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_in_envoy_order() {
        assert_eq!(ResponseFlags::NONE.to_string(), "-");
        let flags = ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED
            | ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
        assert_eq!(flags.to_string(), "UF,URX");
        assert!(flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE));
        assert!(!flags.contains(ResponseFlags::NO_ROUTE));
    }
}
