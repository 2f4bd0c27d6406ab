//! From AuthorizationPolicy resources to a [`PolicySet`]: every value parsed once, every
//! unsupported or malformed input refused with the policy, field and reason.

use super::matcher::{Cidr, NamespaceMatch, PathMatch, StringMatch};
use super::policy::{Check, CompiledPolicy, CompiledRule, Field, PolicySet};
use crate::resources::{AuthorizationAction, AuthorizationPolicy, Condition, Operation, Source};
use crate::yaml::{index_path, join_path};
use std::fmt;

/// Why a policy cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// `namespace/name`.
    pub policy: String,
    /// Path of the offending field, as in diagnostics (`spec.rules[0].when[1].key`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuthorizationPolicy {}: {}: {}",
            self.policy, self.field, self.message
        )
    }
}

impl std::error::Error for CompileError {}

/// Compiles the policies that apply to one workload (`(name, namespace, spec)`, already
/// filtered with [`super::applies_to`]). All errors of all policies are returned together;
/// one bad policy fails the set, so a proxy keeps its previous, fully enforced set instead of
/// enforcing a partial one.
pub fn compile(
    policies: &[(&str, &str, &AuthorizationPolicy)],
) -> Result<PolicySet, Vec<CompileError>> {
    let mut sorted: Vec<&(&str, &str, &AuthorizationPolicy)> = policies.iter().collect();
    sorted.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    let mut set = PolicySet::default();
    let mut errors = Vec::new();
    for (name, namespace, spec) in sorted {
        match compile_policy(name, namespace, spec) {
            Ok((action, policy)) => match action {
                AuthorizationAction::Deny => set.deny.push(policy),
                AuthorizationAction::Audit => set.audit.push(policy),
                _ => set.allow.push(policy),
            },
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Checks one policy the way [`compile`] would, for validation at apply time.
pub fn check(name: &str, namespace: &str, spec: &AuthorizationPolicy) -> Vec<CompileError> {
    compile_policy(name, namespace, spec)
        .err()
        .unwrap_or_default()
}

struct Ctx {
    policy: String,
    errors: Vec<CompileError>,
}

impl Ctx {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(CompileError {
            policy: self.policy.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A field's values and not-values parsed with `parse`; `None` when both are empty.
    fn field<M>(
        &mut self,
        path: &str,
        key: &str,
        not_key: &str,
        values: &[String],
        not_values: &[String],
        mut parse: impl FnMut(&str) -> Result<M, String>,
    ) -> Option<Field<M>> {
        if values.is_empty() && not_values.is_empty() {
            return None;
        }
        let mut one = |ctx: &mut Ctx, key: &str, list: &[String]| -> Vec<M> {
            let mut out = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let f = index_path(&join_path(path, key), i);
                if v.is_empty() {
                    ctx.error(&f, "empty value not allowed");
                    continue;
                }
                match parse(v) {
                    Ok(m) => out.push(m),
                    Err(e) => ctx.error(&f, e),
                }
            }
            out
        };
        let values = one(self, key, values);
        let not_values = one(self, not_key, not_values);
        Some(Field { values, not_values })
    }
}

fn compile_policy(
    name: &str,
    namespace: &str,
    spec: &AuthorizationPolicy,
) -> Result<(AuthorizationAction, CompiledPolicy), Vec<CompileError>> {
    let mut ctx = Ctx {
        policy: format!("{namespace}/{name}"),
        errors: Vec::new(),
    };
    let action = spec.action.unwrap_or(AuthorizationAction::Allow);
    if action == AuthorizationAction::Custom {
        ctx.error(
            "spec.action",
            "action CUSTOM (external authorization) is unsupported by Trellis",
        );
    }
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (index, rule) in spec.rules.iter().enumerate() {
        let rf = index_path("spec.rules", index);
        let mut from = Vec::with_capacity(rule.from.len());
        for (j, f) in rule.from.iter().enumerate() {
            let sf = join_path(&index_path(&join_path(&rf, "from"), j), "source");
            match &f.source {
                None => ctx.error(&sf, "`source` is required"),
                Some(s) => from.push(source(&mut ctx, &sf, s)),
            }
        }
        let mut to = Vec::with_capacity(rule.to.len());
        for (j, t) in rule.to.iter().enumerate() {
            let of = join_path(&index_path(&join_path(&rf, "to"), j), "operation");
            match &t.operation {
                None => ctx.error(&of, "`operation` is required"),
                Some(o) => to.push(operation(&mut ctx, &of, o)),
            }
        }
        let mut when = Vec::with_capacity(rule.when.len());
        for (j, c) in rule.when.iter().enumerate() {
            let wf = index_path(&join_path(&rf, "when"), j);
            if let Some(check) = condition(&mut ctx, &wf, c) {
                when.push(check);
            }
        }
        let http_only = from
            .iter()
            .chain(&to)
            .flatten()
            .chain(&when)
            .any(Check::http_only);
        rules.push(CompiledRule {
            index,
            from,
            to,
            when,
            http_only,
        });
    }
    if !ctx.errors.is_empty() {
        return Err(ctx.errors);
    }
    Ok((
        action,
        CompiledPolicy {
            id: format!("{namespace}.{name}"),
            rules,
        },
    ))
}

fn strings(ignore_case: bool) -> impl FnMut(&str) -> Result<StringMatch, String> {
    move |v| Ok(StringMatch::parse(v, ignore_case))
}

fn cidr(v: &str) -> Result<Cidr, String> {
    Cidr::parse(v)
}

fn port(v: &str) -> Result<u16, String> {
    v.parse::<u16>()
        .map_err(|_| format!("`{v}` is not a port number (0-65535)"))
}

fn namespace(v: &str) -> Result<NamespaceMatch, String> {
    Ok(NamespaceMatch::new(v))
}

fn source(ctx: &mut Ctx, path: &str, s: &Source) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(f) = ctx.field(
        path,
        "principals",
        "notPrincipals",
        &s.principals,
        &s.not_principals,
        strings(false),
    ) {
        checks.push(Check::Principal(f));
    }
    if let Some(f) = ctx.field(
        path,
        "requestPrincipals",
        "notRequestPrincipals",
        &s.request_principals,
        &s.not_request_principals,
        |_| Ok(()),
    ) {
        checks.push(Check::RequestAuth {
            has_values: !f.values.is_empty(),
        });
    }
    if let Some(f) = ctx.field(
        path,
        "namespaces",
        "notNamespaces",
        &s.namespaces,
        &s.not_namespaces,
        namespace,
    ) {
        checks.push(Check::Namespace(f));
    }
    if let Some(f) = ctx.field(
        path,
        "ipBlocks",
        "notIpBlocks",
        &s.ip_blocks,
        &s.not_ip_blocks,
        cidr,
    ) {
        checks.push(Check::SourceIp(f));
    }
    if let Some(f) = ctx.field(
        path,
        "remoteIpBlocks",
        "notRemoteIpBlocks",
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        cidr,
    ) {
        checks.push(Check::RemoteIp(f));
    }
    if checks.is_empty() && *s == Source::default() {
        ctx.error(path, "`source` must not be empty");
    }
    checks
}

fn operation(ctx: &mut Ctx, path: &str, o: &Operation) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(f) = ctx.field(
        path,
        "hosts",
        "notHosts",
        &o.hosts,
        &o.not_hosts,
        strings(true),
    ) {
        checks.push(Check::Host(f));
    }
    if let Some(f) = ctx.field(
        path,
        "methods",
        "notMethods",
        &o.methods,
        &o.not_methods,
        strings(false),
    ) {
        checks.push(Check::Method(f));
    }
    if let Some(f) = ctx.field(
        path,
        "paths",
        "notPaths",
        &o.paths,
        &o.not_paths,
        PathMatch::parse,
    ) {
        checks.push(Check::Path(f));
    }
    if let Some(f) = ctx.field(path, "ports", "notPorts", &o.ports, &o.not_ports, port) {
        checks.push(Check::DestinationPort(f));
    }
    if checks.is_empty() && *o == Operation::default() {
        ctx.error(path, "`operation` must not be empty");
    }
    checks
}

/// The name inside `prefix[name]`, if `key` has that shape with a non-empty name.
fn bracketed<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')
        .filter(|n| !n.is_empty())
}

fn condition(ctx: &mut Ctx, path: &str, c: &Condition) -> Option<Check> {
    let key = c.key.as_str();
    let kf = join_path(path, "key");
    if c.values.is_empty() && c.not_values.is_empty() {
        ctx.error(
            path,
            format!("condition `{key}` needs `values` or `notValues`"),
        );
        return None;
    }
    let values = |ctx: &mut Ctx, parse: &mut dyn FnMut(&str) -> Result<StringMatch, String>| {
        ctx.field(path, "values", "notValues", &c.values, &c.not_values, parse)
    };
    let cidrs =
        |ctx: &mut Ctx| ctx.field(path, "values", "notValues", &c.values, &c.not_values, cidr);
    // Values of JWT attributes are only checked for emptiness: they never match.
    let jwt = |ctx: &mut Ctx| {
        let f = ctx.field(
            path,
            "values",
            "notValues",
            &c.values,
            &c.not_values,
            |_| Ok(()),
        )?;
        Some(Check::RequestAuth {
            has_values: !f.values.is_empty(),
        })
    };
    let unusable = |ctx: &mut Ctx, message: String| {
        ctx.error(&kf, message);
        None
    };
    match key {
        "source.ip" => cidrs(ctx).map(Check::SourceIp),
        "remote.ip" => cidrs(ctx).map(Check::RemoteIp),
        "destination.ip" => cidrs(ctx).map(Check::DestinationIp),
        "destination.port" => ctx
            .field(path, "values", "notValues", &c.values, &c.not_values, port)
            .map(Check::DestinationPort),
        "source.namespace" => ctx
            .field(
                path,
                "values",
                "notValues",
                &c.values,
                &c.not_values,
                namespace,
            )
            .map(Check::Namespace),
        "source.principal" => values(ctx, &mut strings(false)).map(Check::Principal),
        "connection.sni" => values(ctx, &mut strings(false)).map(Check::Sni),
        "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => jwt(ctx),
        k if k.starts_with("request.auth.claims") => match bracketed(k, "request.auth.claims") {
            Some(_) => jwt(ctx),
            None => unusable(
                ctx,
                format!("bad key `{k}`: expected `request.auth.claims[name]`"),
            ),
        },
        k if k.starts_with("request.headers") => match bracketed(k, "request.headers") {
            Some(name) => values(ctx, &mut strings(false)).map(|field| Check::Header {
                name: name.to_ascii_lowercase(),
                field,
            }),
            None => unusable(
                ctx,
                format!("bad key `{k}`: expected `request.headers[name]`"),
            ),
        },
        k if k.starts_with("experimental.envoy.filters.")
            || k.starts_with("request.experimental.inline.headers")
            || k == "source.serviceAccount" =>
        {
            unusable(
                ctx,
                format!("condition key `{k}` is unsupported by Trellis"),
            )
        }
        "destination.namespace" => unusable(
            ctx,
            "`destination.namespace` is replaced by the policy's metadata.namespace".into(),
        ),
        k if k.starts_with("destination.labels") => unusable(
            ctx,
            format!("`{k}` is replaced by the policy's workload `selector`"),
        ),
        "destination.name" | "destination.user" => unusable(
            ctx,
            format!("`{key}` is deprecated (only in Istio's v1alpha1 RBAC)"),
        ),
        k => unusable(ctx, format!("unknown condition key `{k}`")),
    }
}
