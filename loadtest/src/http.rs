//! The runner's own HTTP requests, not the measured load: one blocking client, and asking
//! again while the server answers 503 (its "database is locked, try again later"), as the
//! person at the kiosk or the admin page would. Nothing here is counted in a report; the
//! load's requests are `load/`'s.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};

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
    let mut tries = 0;
    loop {
        tries += 1;
        match build().send() {
            Ok(r) if r.status().as_u16() == 503 && tries < again.tries => {}
            Ok(r) => return Ok((r, tries)),
            Err(e) if !again.on_send_error || tries >= again.tries => return Err(e),
            Err(_) => {}
        }
        std::thread::sleep(again.pause);
    }
}
