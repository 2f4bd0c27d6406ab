//! The page shell every page shares (header, nav, main), and the error pages: a backend failure
//! is a 502 with its message, bad input a 400 naming the parameter, an unknown page a 404.

use crate::backend::BackendError;
use crate::model::Diagnostic;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use leptos::prelude::*;

/// The nav items, in the order shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Graph,
    Services,
    Workloads,
    Config,
    Traces,
    Proxies,
    /// Error and other pages that belong to no section.
    None,
}

impl Nav {
    pub const ALL: [Nav; 7] = [
        Nav::Overview,
        Nav::Graph,
        Nav::Services,
        Nav::Workloads,
        Nav::Config,
        Nav::Traces,
        Nav::Proxies,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Nav::Overview => "Overview",
            Nav::Graph => "Graph",
            Nav::Services => "Services",
            Nav::Workloads => "Workloads",
            Nav::Config => "Config",
            Nav::Traces => "Traces",
            Nav::Proxies => "Proxies",
            Nav::None => "",
        }
    }

    pub fn href(self) -> &'static str {
        match self {
            Nav::Overview | Nav::None => "/",
            Nav::Graph => "/graph",
            Nav::Services => "/services",
            Nav::Workloads => "/workloads",
            Nav::Config => "/config",
            Nav::Traces => "/traces",
            Nav::Proxies => "/proxies",
        }
    }
}

/// A rendered page body with what the shell needs around it.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    /// The `<title>` and `<h1>`.
    pub title: String,
    pub nav: Nav,
    /// The HTML of `<main>`'s content, rendered by Leptos (so escaped).
    pub body: String,
}

impl Page {
    pub fn new(nav: Nav, title: impl Into<String>, body: impl IntoView + 'static) -> Page {
        Page {
            status: StatusCode::OK,
            title: title.into(),
            nav,
            body: body.to_html(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    /// The whole document inside the shell.
    pub fn into_response(self, console_title: &str) -> Response {
        let html = document(console_title, &self);
        (
            self.status,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Html(html),
        )
            .into_response()
    }
}

/// Why a page could not be shown.
#[derive(Debug, Clone, PartialEq)]
pub enum PageError {
    Backend(BackendError),
    /// Bad input (a query parameter or form field), with a message naming it.
    BadRequest(String),
    NotFound(String),
}

impl From<BackendError> for PageError {
    fn from(e: BackendError) -> PageError {
        PageError::Backend(e)
    }
}

impl PageError {
    /// The error page.
    pub fn page(&self) -> Page {
        let (status, heading, message) = match self {
            PageError::Backend(BackendError::NotFound(what)) => (
                StatusCode::NOT_FOUND,
                "Not found",
                format!("{what} not found."),
            ),
            PageError::Backend(BackendError::BadRequest(message))
            | PageError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "Bad request", message.clone())
            }
            PageError::Backend(BackendError::Invalid(messages)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid configuration",
                trellis_api::diagnostics::render(messages),
            ),
            PageError::Backend(BackendError::Unavailable(message)) => (
                StatusCode::BAD_GATEWAY,
                "The control plane could not answer",
                message.clone(),
            ),
            PageError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what.clone()),
        };
        let hint = (status == StatusCode::BAD_GATEWAY)
            .then_some("The page will show data again once the backend recovers; reload to retry.");
        Page::new(
            Nav::None,
            heading,
            view! {
                <section class="panel error-panel" role="alert">
                    <h2>{heading}</h2>
                    <p class="error-message">{message}</p>
                    {hint.map(|h| view! { <p>{h}</p> })}
                    <p><a href="/">"Back to the overview"</a></p>
                </section>
            },
        )
        .with_status(status)
    }
}

/// The full HTML document: header with the nav, then the page.
fn document(console_title: &str, page: &Page) -> String {
    let nav = Nav::ALL
        .into_iter()
        .map(|item| {
            let current = (item == page.nav).then_some("page");
            view! {
                <li>
                    <a href=item.href() aria-current=current>
                        {item.title()}
                    </a>
                </li>
            }
        })
        .collect_view();
    let doc_title = if page.title.is_empty() {
        console_title.to_string()
    } else {
        format!("{} · {console_title}", page.title)
    };
    let shell = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <title>{doc_title}</title>
                <link rel="stylesheet" href="/static/console.css" />
                <script src="/static/console.js" defer></script>
            </head>
            <body>
                <a class="skip" href="#main">"Skip to content"</a>
                <header class="top">
                    <a class="brand" href="/">{console_title.to_string()}</a>
                    <nav aria-label="Sections">
                        <ul>{nav}</ul>
                    </nav>
                </header>
                <main id="main" tabindex="-1">
                    <h1>{page.title.clone()}</h1>
                    <div inner_html=page.body.clone()></div>
                </main>
            </body>
        </html>
    };
    format!("<!DOCTYPE html>{}", shell.to_html())
}

/// Validation messages as a list: severity word, place, field path and text; `id` lets a form
/// field point at it with `aria-describedby`.
pub fn messages_list(messages: &[Diagnostic], id: &'static str) -> impl IntoView + use<> {
    let items = messages
        .iter()
        .map(|d| {
            let (class, word) = if d.is_error() {
                ("msg msg-error", "Error")
            } else {
                ("msg msg-warning", "Warning")
            };
            let place = d.line.map(|l| format!("line {l}"));
            view! {
                <li class=class>
                    <strong>{word}</strong>
                    {place.map(|p| view! { <span class="msg-place">{p}</span> })}
                    {d.resource.clone().map(|r| view! { <span class="msg-resource">{r}</span> })}
                    {d.field.clone().map(|f| view! { <code class="msg-field">{f}</code> })}
                    <span class="msg-text">{d.message.clone()}</span>
                </li>
            }
        })
        .collect_view();
    view! { <ul class="messages" id=id>{items}</ul> }
}
