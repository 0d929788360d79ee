//! The users' HTTP clients and cookies.
//!
//! A class's [`Connection`] decides who owns the connections: `keep-alive` gives each user a
//! client of its own (its own persistent connection, as a browser holds one to the app);
//! `pooled` and `close` give the class one client that its users share (one pool of
//! persistent connections, or none kept). Cookies are each user's own in every case: every
//! client reads and stores cookies through [`UserCookies`], which hands reqwest the jar of the
//! user whose request is being sent (a task-local set around the send, [`send_as`]), so
//! a login's cookie, also one set on a redirect, goes with that user's next requests only.
//!
//! What an open connection costs the generator is hyper's: two 8 KB buffers (read and
//! write) per connection, however small its requests; a user's own client adds about 3 KB.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderValue;

use crate::scenario::Connection;

/// How long one request may take before it counts as unanswered.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

tokio::task_local! {
    /// The cookies of the user whose request the current task is sending.
    static USER_JAR: Arc<Jar>;
}

/// The cookie store every client is built with: the jar of the user sending, none outside a
/// user's send.
struct UserCookies;

impl CookieStore for UserCookies {
    fn set_cookies(&self, headers: &mut dyn Iterator<Item = &HeaderValue>, url: &reqwest::Url) {
        let _ = USER_JAR.try_with(|jar| jar.set_cookies(headers, url));
    }

    fn cookies(&self, url: &reqwest::Url) -> Option<HeaderValue> {
        USER_JAR.try_with(|jar| jar.cookies(url)).ok().flatten()
    }
}

/// Sends `request` (following its redirects) with `jar` as the cookies every client reads
/// and stores: the request is built into its send inside the scope, where its first
/// `Cookie` header is read.
pub(super) async fn send_as(
    jar: Arc<Jar>,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    USER_JAR
        .scope(jar, async move { request.send().await })
        .await
}

/// A client for `connection`: the class's shared one (`pooled`, `close`) or a user's own
/// (`keep-alive`).
pub(super) fn client_for(connection: Connection) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .cookie_provider(Arc::new(UserCookies))
        .user_agent(concat!("lockbench/", env!("CARGO_PKG_VERSION")));
    let builder = match connection {
        Connection::KeepAlive | Connection::Pooled => builder,
        Connection::Close => builder.pool_max_idle_per_host(0),
    };
    builder.build().unwrap_or_default()
}

/// The client a user of a class with `connection` sends with, given the class's shared one.
pub(super) fn user_client(
    connection: Connection,
    class_client: &reqwest::Client,
) -> reqwest::Client {
    match connection {
        Connection::KeepAlive => client_for(connection),
        Connection::Pooled | Connection::Close => class_client.clone(),
    }
}
