//! Kiali's graph find/hide language, small and real.
//!
//! An expression tests either nodes or edges (mixing the two is refused, as Kiali does):
//!
//! - node attributes, compared with `=`/`!=` (a `*` is a wildcard): `name`, `namespace`/`ns`,
//!   `app`, `version`, `workload`/`wl`, `service`/`svc`, `node` (workload, app, service, unknown);
//!   numeric, compared with `= != > >= < <=`: `httpin`, `httpout` (requests/s), `%errin`, `%errout`;
//! - node flags: `healthy`, `degraded`, `failure`, `idle`, `outside`, `root`, `vs`, `cb`, `fi`;
//! - edge attributes: `protocol` (http, grpc, tcp); numeric: `rt`/`responsetime` (p95 ms, as
//!   Kiali's `rt`), `http`/`grpc` (requests/s of that protocol), `%httperr`/`%grpcerr`/`%err`,
//!   `%httptraffic`/`%grpctraffic`/`%traffic` (share of the source's traffic), `tcp`/`throughput`
//!   (bytes/s); flags: `mtls`, `traffic`.
//!
//! Combine with `AND`/`&&`, `OR`/`||`, `!`/`NOT` and parentheses. Errors carry the character
//! position of what is wrong so the page can point at it.

use super::model::{Edge, GraphData, Health, Node, Protocol};
use std::fmt;

/// A parse error: what is wrong and where (0-based character index into the expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for FindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.position + 1, self.message)
    }
}

impl std::error::Error for FindError {}

/// What an expression selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Nodes,
    Edges,
}

/// A parsed find or hide expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
    target: Target,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Test(Test),
}

#[derive(Debug, Clone, PartialEq)]
struct Test {
    attr: Attr,
    compare: Option<(Op, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    // Node text.
    Name,
    Namespace,
    App,
    Version,
    Workload,
    Service,
    NodeKind,
    // Node numbers.
    HttpIn,
    HttpOut,
    ErrIn,
    ErrOut,
    // Node flags.
    Healthy,
    Degraded,
    Failure,
    Idle,
    Outside,
    Root,
    VirtualService,
    CircuitBreaker,
    FaultInjection,
    // Edge text.
    Protocol,
    // Edge numbers.
    ResponseTime,
    HttpRate,
    GrpcRate,
    HttpErr,
    GrpcErr,
    Err,
    HttpTraffic,
    GrpcTraffic,
    Traffic,
    Throughput,
    TcpRate,
    // Edge flags.
    Mtls,
    HasTraffic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Flag,
}

const ATTRS: &[(&str, Attr)] = &[
    ("name", Attr::Name),
    ("namespace", Attr::Namespace),
    ("ns", Attr::Namespace),
    ("app", Attr::App),
    ("version", Attr::Version),
    ("workload", Attr::Workload),
    ("wl", Attr::Workload),
    ("service", Attr::Service),
    ("svc", Attr::Service),
    ("node", Attr::NodeKind),
    ("httpin", Attr::HttpIn),
    ("httpout", Attr::HttpOut),
    ("%errin", Attr::ErrIn),
    ("%errout", Attr::ErrOut),
    ("healthy", Attr::Healthy),
    ("degraded", Attr::Degraded),
    ("failure", Attr::Failure),
    ("idle", Attr::Idle),
    ("outside", Attr::Outside),
    ("outsider", Attr::Outside),
    ("root", Attr::Root),
    ("vs", Attr::VirtualService),
    ("virtualservice", Attr::VirtualService),
    ("cb", Attr::CircuitBreaker),
    ("circuitbreaker", Attr::CircuitBreaker),
    ("fi", Attr::FaultInjection),
    ("faultinjection", Attr::FaultInjection),
    ("protocol", Attr::Protocol),
    ("rt", Attr::ResponseTime),
    ("responsetime", Attr::ResponseTime),
    ("http", Attr::HttpRate),
    ("grpc", Attr::GrpcRate),
    ("%httperr", Attr::HttpErr),
    ("%grpcerr", Attr::GrpcErr),
    ("%err", Attr::Err),
    ("%httptraffic", Attr::HttpTraffic),
    ("%grpctraffic", Attr::GrpcTraffic),
    ("%traffic", Attr::Traffic),
    ("throughput", Attr::Throughput),
    ("tcp", Attr::TcpRate),
    ("mtls", Attr::Mtls),
    ("traffic", Attr::HasTraffic),
];

impl Attr {
    fn lookup(word: &str) -> Option<Attr> {
        let lower = word.to_ascii_lowercase();
        ATTRS.iter().find(|(n, _)| *n == lower).map(|(_, a)| *a)
    }

    fn kind(self) -> Kind {
        use Attr::*;
        match self {
            Name | Namespace | App | Version | Workload | Service | NodeKind | Protocol => {
                Kind::Text
            }
            HttpIn | HttpOut | ErrIn | ErrOut | ResponseTime | HttpRate | GrpcRate | HttpErr
            | GrpcErr | Err | HttpTraffic | GrpcTraffic | Traffic | Throughput | TcpRate => {
                Kind::Number
            }
            Healthy | Degraded | Failure | Idle | Outside | Root | VirtualService
            | CircuitBreaker | FaultInjection | Mtls | HasTraffic => Kind::Flag,
        }
    }

    fn target(self) -> Target {
        use Attr::*;
        match self {
            Protocol | ResponseTime | HttpRate | GrpcRate | HttpErr | GrpcErr | Err
            | HttpTraffic | GrpcTraffic | Traffic | Throughput | TcpRate | Mtls | HasTraffic => {
                Target::Edges
            }
            _ => Target::Nodes,
        }
    }
}

/// Parses `text`; `Ok(None)` when it is blank.
pub fn parse(text: &str) -> Result<Option<Filter>, FindError> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        end: text.chars().count(),
        target: None,
    };
    let expr = parser.or()?;
    if let Some(t) = parser.tokens.get(parser.at) {
        return Err(FindError {
            position: t.position,
            message: format!(
                "unexpected {}; join tests with AND or OR",
                t.token.describe()
            ),
        });
    }
    Ok(Some(Filter {
        expr,
        target: parser.target.unwrap_or(Target::Nodes),
    }))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Quoted(q) => format!("\"{q}\""),
            Token::Op(_) => "a comparison".to_string(),
            Token::And => "AND".to_string(),
            Token::Or => "OR".to_string(),
            Token::Not => "`!`".to_string(),
            Token::Open => "`(`".to_string(),
            Token::Close => "`)`".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Spanned {
    token: Token,
    position: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '%' | '_' | '-' | '.' | ':' | '/' | '*')
}

fn tokenize(text: &str) -> Result<Vec<Spanned>, FindError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        let (token, len) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            ('&', Some('&')) => (Token::And, 2),
            ('|', Some('|')) => (Token::Or, 2),
            ('!', Some('=')) => (Token::Op(Op::Ne), 2),
            ('!', _) => (Token::Not, 1),
            ('>', Some('=')) => (Token::Op(Op::Ge), 2),
            ('<', Some('=')) => (Token::Op(Op::Le), 2),
            ('=', Some('=')) => (Token::Op(Op::Eq), 2),
            ('>', _) => (Token::Op(Op::Gt), 1),
            ('<', _) => (Token::Op(Op::Lt), 1),
            ('=', _) => (Token::Op(Op::Eq), 1),
            ('"', _) => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == '"') else {
                    return Err(FindError {
                        position: i,
                        message: "this quote is never closed".to_string(),
                    });
                };
                let value: String = chars[i + 1..i + 1 + len].iter().collect();
                (Token::Quoted(value), len + 2)
            }
            (c, _) if is_word_char(c) => {
                let len = chars[i..].iter().take_while(|&&c| is_word_char(c)).count();
                let word: String = chars[i..i + len].iter().collect();
                let token = match word.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    _ => Token::Word(word),
                };
                (token, len)
            }
            (c, _) => {
                return Err(FindError {
                    position: i,
                    message: format!("unexpected character `{c}`"),
                });
            }
        };
        out.push(Spanned {
            token,
            position: start,
        });
        i += len;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
    /// Character count of the text: where "expected …" errors at the end point.
    end: usize,
    target: Option<Target>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.token)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |t| t.position)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, FindError> {
        Err(FindError {
            position: self.position(),
            message: message.into(),
        })
    }

    fn or(&mut self) -> Result<Expr, FindError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FindError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FindError> {
        match self.peek() {
            Some(Token::Not) => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Token::Open) => {
                let open = self.position();
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(FindError {
                        position: open,
                        message: "this `(` is never closed".to_string(),
                    });
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(_)) => self.test(),
            Some(other) => {
                let what = other.describe();
                self.error(format!(
                    "expected an attribute such as `namespace` or `rt`, found {what}"
                ))
            }
            None => self.error("expected an attribute such as `namespace` or `rt` here"),
        }
    }

    fn test(&mut self) -> Result<Expr, FindError> {
        let Some(Token::Word(word)) = self.peek().cloned() else {
            return self.error("expected an attribute");
        };
        let Some(attr) = Attr::lookup(&word) else {
            return self.error(format!(
                "unknown attribute `{word}`; try namespace, app, version, workload, service, \
                 node, healthy, rt, %httperr, http, protocol, mtls"
            ));
        };
        match self.target {
            Some(t) if t != attr.target() => {
                return self.error(format!(
                    "`{word}` tests {} but the expression already tests {}; use one kind",
                    target_name(attr.target()),
                    target_name(t)
                ));
            }
            _ => self.target = Some(attr.target()),
        }
        self.at += 1;
        let Some(Token::Op(op)) = self.peek().cloned() else {
            if attr.kind() == Kind::Flag {
                return Ok(Expr::Test(Test {
                    attr,
                    compare: None,
                }));
            }
            return self.error(format!(
                "`{word}` needs a comparison, e.g. `{word} {}`",
                example(attr)
            ));
        };
        if attr.kind() == Kind::Flag {
            return self.error(format!(
                "`{word}` takes no comparison; write `{word}` or `!{word}`"
            ));
        }
        let op_position = self.position();
        self.at += 1;
        let value_position = self.position();
        let raw = match self.peek().cloned() {
            Some(Token::Word(v)) | Some(Token::Quoted(v)) => v,
            _ => {
                return Err(FindError {
                    position: value_position,
                    message: format!(
                        "expected a value after the comparison at column {}",
                        op_position + 1
                    ),
                });
            }
        };
        self.at += 1;
        let value = match attr.kind() {
            Kind::Number => match raw.parse::<f64>() {
                Ok(n) if n.is_finite() => Value::Number(n),
                _ => {
                    return Err(FindError {
                        position: value_position,
                        message: format!("`{word}` compares numbers; `{raw}` is not a number"),
                    });
                }
            },
            _ => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(FindError {
                        position: op_position,
                        message: format!("`{word}` is text: compare it with = or !="),
                    });
                }
                Value::Text(raw)
            }
        };
        Ok(Expr::Test(Test {
            attr,
            compare: Some((op, value)),
        }))
    }
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Nodes => "nodes",
        Target::Edges => "edges",
    }
}

fn example(attr: Attr) -> &'static str {
    match attr {
        Attr::Namespace => "= shop",
        Attr::NodeKind => "= service",
        Attr::Protocol => "= grpc",
        Attr::Version => "!= v1",
        _ if attr.kind() == Kind::Number => "> 1",
        _ => "= reviews",
    }
}

/// `*` matches any run of characters; otherwise equality (case-sensitive, as Kubernetes names).
fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

fn compare_number(actual: Option<f64>, op: Op, wanted: f64) -> bool {
    let Some(a) = actual else { return false };
    match op {
        Op::Eq => a == wanted,
        Op::Ne => a != wanted,
        Op::Gt => a > wanted,
        Op::Ge => a >= wanted,
        Op::Lt => a < wanted,
        Op::Le => a <= wanted,
    }
}

/// A node without the attribute (a service has no version) matches neither `=` nor `!=`.
fn compare_text(actual: &[Option<&str>], op: Op, wanted: &str) -> bool {
    if actual.iter().all(Option::is_none) {
        return false;
    }
    let any = actual.iter().flatten().any(|a| glob(wanted, a));
    if op == Op::Eq { any } else { !any }
}

impl Test {
    fn node(&self, n: &Node) -> bool {
        let (op, value) = match &self.compare {
            None => {
                return match self.attr {
                    Attr::Healthy => n.health == Health::Healthy,
                    Attr::Degraded => n.health == Health::Degraded,
                    Attr::Failure => n.health == Health::Failure,
                    Attr::Idle => n.health == Health::NoTraffic,
                    Attr::Outside => n.badges.is_outside,
                    Attr::Root => n.badges.is_root,
                    Attr::VirtualService => n.badges.virtual_service,
                    Attr::CircuitBreaker => n.badges.circuit_breaker,
                    Attr::FaultInjection => n.badges.fault_injection,
                    _ => false,
                };
            }
            Some((op, value)) => (*op, value),
        };
        match value {
            Value::Text(t) => {
                let label = n.label();
                let fields: Vec<Option<&str>> = match self.attr {
                    Attr::Name => vec![
                        Some(label.as_str()),
                        n.workload.as_deref(),
                        n.app.as_deref(),
                        n.service.as_deref(),
                    ],
                    Attr::Namespace => vec![n.namespace.as_deref()],
                    Attr::App => vec![n.app.as_deref()],
                    Attr::Version => vec![n.version.as_deref()],
                    Attr::Workload => vec![n.workload.as_deref()],
                    Attr::Service => vec![n.service.as_deref()],
                    Attr::NodeKind => vec![Some(n.kind.as_str())],
                    _ => vec![],
                };
                compare_text(&fields, op, t)
            }
            Value::Number(x) => {
                let actual = match self.attr {
                    Attr::HttpIn => n.traffic_in.requests_per_second,
                    Attr::HttpOut => n.traffic_out.requests_per_second,
                    Attr::ErrIn => n.traffic_in.error_percent(),
                    Attr::ErrOut => n.traffic_out.error_percent(),
                    _ => return false,
                };
                compare_number(Some(actual), op, *x)
            }
        }
    }

    fn edge(&self, e: &Edge) -> bool {
        let (op, value) = match &self.compare {
            None => {
                return match self.attr {
                    Attr::Mtls => e.is_mtls(),
                    Attr::HasTraffic => e.requests_per_second > 0.0 || e.bytes_per_second > 0.0,
                    _ => false,
                };
            }
            Some((op, value)) => (*op, value),
        };
        let of = |p: Protocol, v: f64| (e.protocol == p).then_some(v);
        match value {
            Value::Text(t) => compare_text(&[Some(e.protocol.as_str())], op, t),
            Value::Number(x) => {
                let actual = match self.attr {
                    Attr::ResponseTime => e.latency_ms.map(|l| l.p95),
                    Attr::HttpRate => of(Protocol::Http, e.requests_per_second),
                    Attr::GrpcRate => of(Protocol::Grpc, e.requests_per_second),
                    Attr::HttpErr => of(Protocol::Http, e.error_percent),
                    Attr::GrpcErr => of(Protocol::Grpc, e.error_percent),
                    Attr::Err => (e.protocol != Protocol::Tcp).then_some(e.error_percent),
                    Attr::HttpTraffic => of(Protocol::Http, e.traffic_share_percent),
                    Attr::GrpcTraffic => of(Protocol::Grpc, e.traffic_share_percent),
                    Attr::Traffic => Some(e.traffic_share_percent),
                    Attr::Throughput => Some(e.bytes_per_second),
                    Attr::TcpRate => of(Protocol::Tcp, e.bytes_per_second),
                    _ => None,
                };
                compare_number(actual, op, *x)
            }
        }
    }
}

impl Expr {
    fn eval(&self, test: &dyn Fn(&Test) -> bool) -> bool {
        match self {
            Expr::And(a, b) => a.eval(test) && b.eval(test),
            Expr::Or(a, b) => a.eval(test) || b.eval(test),
            Expr::Not(a) => !a.eval(test),
            Expr::Test(t) => test(t),
        }
    }
}

impl Filter {
    pub fn target(&self) -> Target {
        self.target
    }

    /// Whether node `n` matches; always false for an edge expression.
    pub fn matches_node(&self, n: &Node) -> bool {
        self.target == Target::Nodes && self.expr.eval(&|t| t.node(n))
    }

    /// Whether edge `e` matches; always false for a node expression.
    pub fn matches_edge(&self, e: &Edge) -> bool {
        self.target == Target::Edges && self.expr.eval(&|t| t.edge(e))
    }
}

/// Which nodes and edges a find expression highlights (by index into `data`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Highlight {
    pub nodes: Vec<bool>,
    pub edges: Vec<bool>,
}

impl Highlight {
    pub fn of(data: &GraphData, filter: Option<&Filter>) -> Highlight {
        let Some(f) = filter else {
            return Highlight {
                nodes: vec![false; data.nodes.len()],
                edges: vec![false; data.edges.len()],
            };
        };
        Highlight {
            nodes: data.nodes.iter().map(|n| f.matches_node(n)).collect(),
            edges: data.edges.iter().map(|e| f.matches_edge(e)).collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.nodes.iter().chain(&self.edges).filter(|&&m| m).count()
    }
}

/// Removes what `filter` matches: matching nodes with their edges, or matching edges. Nodes left
/// without any edge by the hiding go too (as Kiali does), but `unknown`-only or lone nodes that had
/// no edges to begin with stay.
pub fn hide(data: &GraphData, filter: &Filter) -> GraphData {
    let hidden_nodes: std::collections::HashSet<&str> = data
        .nodes
        .iter()
        .filter(|n| filter.matches_node(n))
        .map(|n| n.id.as_str())
        .collect();
    let edges: Vec<Edge> = data
        .edges
        .iter()
        .filter(|e| {
            !hidden_nodes.contains(e.source.as_str())
                && !hidden_nodes.contains(e.target.as_str())
                && !filter.matches_edge(e)
        })
        .cloned()
        .collect();
    let had_edges: std::collections::HashSet<&str> = data
        .edges
        .iter()
        .flat_map(|e| [e.source.as_str(), e.target.as_str()])
        .collect();
    let has_edges: std::collections::HashSet<&str> = edges
        .iter()
        .flat_map(|e| [e.source.as_str(), e.target.as_str()])
        .collect();
    let nodes = data
        .nodes
        .iter()
        .filter(|n| !hidden_nodes.contains(n.id.as_str()))
        .filter(|n| has_edges.contains(n.id.as_str()) || !had_edges.contains(n.id.as_str()))
        .cloned()
        .collect();
    GraphData {
        window: data.window,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests;
