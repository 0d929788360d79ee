//! The runner's own HTTP requests, not the measured load: one blocking client, asking again
//! while the server answers 503 (its "database is locked, try again later") as the person at
//! the kiosk or the admin page would, and registering a batch's people. The requests that
//! reach the app's database are recorded in a [`Recorder`] of their own (the report's
//! `runner_requests`), so that a lock error the server counts in one of them is seen beside
//! the request that met it; the load's requests are `load/`'s.

use std::time::{Duration, Instant};

use anyhow::Context;
use lockbench_server::photos::Manifest;
use reqwest::blocking::{Client, RequestBuilder, Response};

use crate::load::{Outcome, Recorder, Timing};

/// A blocking client for the runner's own requests (registrations, posting the batch,
/// status, scrapes): a fresh connection each time, so every worker behind the port is
/// reached, and a timeout long enough for a server that is waiting on a lock.
pub fn client() -> anyhow::Result<Client> {
    Ok(Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()?)
}

/// How to ask again.
#[derive(Debug, Clone, Copy)]
pub struct Again {
    /// At most this many sends in all.
    pub tries: u32,
    /// The pause between two sends.
    pub pause: Duration,
    /// Also ask again when the request could not be sent (a worker restarting).
    pub on_send_error: bool,
}

impl Again {
    /// What an admin does on a 503: up to 30 tries, a second apart.
    pub const ADMIN: Again = Again {
        tries: 30,
        pause: Duration::from_secs(1),
        on_send_error: false,
    };
}

/// Sends the request `build` makes until the answer is not a 503 or the tries are used up;
/// the last answer is returned either way, with how many sends it took.
pub fn send_again_on_503(
    build: impl Fn() -> RequestBuilder,
    again: Again,
) -> reqwest::Result<(Response, u32)> {
    send_recorded(None, build, again)
}

/// [`send_again_on_503`], every send recorded under `(recorder, endpoint)` when given: its
/// status, whether a failed answer mentions a lock (the body is read only for a failure, and
/// then kept in the returned error text), and its latency.
pub fn send_recorded(
    record: Option<(&Recorder, &str)>,
    build: impl Fn() -> RequestBuilder,
    again: Again,
) -> reqwest::Result<(Response, u32)> {
    let mut tries = 0;
    loop {
        tries += 1;
        let sent = Instant::now();
        let result = build().send();
        if let Some((recorder, endpoint)) = record {
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            recorder.record(
                endpoint,
                &Outcome {
                    status,
                    expected: status.is_some_and(|s| (200..300).contains(&s)),
                    // The app's 503 is its lock error; other failures are not read here.
                    lock_mention: false,
                    timeout: result.as_ref().err().is_some_and(|e| e.is_timeout()),
                },
                Timing {
                    intended: sent,
                    tick_sent: sent,
                    sent,
                    answered: Instant::now(),
                },
            );
        }
        match result {
            Ok(r) if r.status().as_u16() == 503 && tries < again.tries => {}
            Ok(r) => return Ok((r, tries)),
            Err(e) if !again.on_send_error || tries >= again.tries => return Err(e),
            Err(_) => {}
        }
        std::thread::sleep(again.pause);
    }
}

/// Creates the batch's registrations through the kiosk endpoint, as the event's staff does
/// before the photos are processed; each send is recorded when `recorder` is given.
pub fn register_people(
    base: &str,
    manifest: &Manifest,
    recorder: Option<&Recorder>,
) -> anyhow::Result<usize> {
    let client = client()?;
    let url = format!("{}/api/registrations", base.trim_end_matches('/'));
    // A 503 means the database was locked: try again, as the kiosk's user would.
    let again = Again {
        tries: 30,
        pause: Duration::from_millis(500),
        on_send_error: false,
    };
    for person in &manifest.people {
        let (response, _) = send_recorded(
            recorder.map(|r| (r, "POST /api/registrations (the batch's people)")),
            || {
                client
                    .post(&url)
                    .json(&serde_json::json!({"name": person.name, "email": person.email}))
            },
            again,
        )
        .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            anyhow::bail!("POST {url} for {} answered {status}: {body}", person.email);
        }
    }
    Ok(manifest.people.len())
}
