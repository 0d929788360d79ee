//! The reference app over HTTP: the incident's dashboard and photo processor.
//!
//! [`router`] builds the whole axum `Router` from an [`AppState`], so tests drive it with
//! `tower::ServiceExt::oneshot` exactly as the server serves it.
//!
//! The handlers check their input, record what the request asks for and answer; a batch's
//! claim and its processor's thread are the processor's (`processor::claim_batch`,
//! `processor::start_batch`). Batch folders are confined to the photo root
//! ([`AppState::with_photo_root`]).
//!
//! Reaches the database only through the store's units of work; never opens connections or
//! issues PRAGMAs (storage does).

mod admin;
pub mod error;
pub mod metrics;
pub mod stats;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::{info, info_span};

pub use error::AppError;
use metrics::Metrics;
use stats::{ops, RequestedSettings, WorkerSettingsReport};

use crate::now_sql;
use crate::photos;
use crate::processor::{self, DataDirs, ProcessorConfig};
use crate::storage::{self, RetryConfig, Store, Tx, Value};

/// Largest request body accepted (the API takes small JSON documents only).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Name of the cookie that carries the admin token after `/admin?token=...`.
pub const ADMIN_COOKIE: &str = "lockbench_admin";

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub worker: u32,
    pub admin_token: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub processor: Arc<ProcessorConfig>,
    pub retry: Arc<RetryConfig>,
    pub dirs: Arc<DataDirs>,
    /// The folder POST /api/batches must name a folder inside of (`serve --photo-root`; the
    /// data folder unless set).
    pub photo_root: Arc<PathBuf>,
    /// False for a web-only server (`--role web`): it serves the dashboard and the kiosks
    /// and leaves batches to a server that runs the processor.
    pub runs_processor: bool,
}

impl AppState {
    pub fn new(
        store: Store,
        worker: u32,
        admin_token: &str,
        processor: ProcessorConfig,
        retry: RetryConfig,
        data_dir: PathBuf,
    ) -> AppState {
        // The processor's counters are kept in the store's (journaled) stats too, and go on
        // from what those hold.
        let metrics = Metrics::default();
        metrics.keep_in(&store);
        AppState {
            store,
            worker,
            admin_token: Arc::from(admin_token),
            metrics: Arc::new(metrics),
            processor: Arc::new(processor),
            retry: Arc::new(retry),
            dirs: Arc::new(DataDirs::under(&data_dir)),
            photo_root: Arc::new(data_dir),
            runs_processor: true,
        }
    }

    /// Batches must be folders inside `root` (resolved, symbolic links included, when a
    /// batch is posted): any other folder is refused with 403.
    pub fn with_photo_root(mut self, root: PathBuf) -> AppState {
        self.photo_root = Arc::new(root);
        self
    }

    /// A web-only state (`--role web`): POST /api/batches is refused with 409.
    pub fn web_only(mut self) -> AppState {
        self.runs_processor = false;
        self
    }

    /// Runs a blocking storage call off the async workers.
    async fn db<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, storage::DbError> + Send + 'static,
    ) -> Result<T, AppError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || call(&store)).await??)
    }
}

/// JSON body extractor whose rejections are the app's errors (400, 413, 415, 422). The body
/// must be a JSON object: serde would also fill a struct from an array of its fields in
/// order (`["Ada", "ada@example.org"]`), which no client of this API means to send.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if !json_content_type(req.headers()) {
            return Err(AppError::UnsupportedMedia(
                "Expected request with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge,
                _ => AppError::BadRequest(e.body_text()),
            })?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let kind = match value {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Null => "null",
                    serde_json::Value::Object(_) => "an object",
                };
                return Err(AppError::Invalid {
                    field: "body",
                    reason: format!("expected a JSON object, got {kind}"),
                });
            }
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// `Content-Type: application/json`, or another JSON type (`application/*+json`), as axum's
/// own `Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The whole application, with no limit on the requests served at once.
pub fn router(state: AppState) -> Router {
    router_with_threads(state, 0)
}

/// The whole application; with `threads` > 0, at most that many of the app's requests are
/// served at once and the others queue, as a gunicorn worker's threads do. lockbench's own
/// endpoints (`/api/stats`, `/metrics`, `/healthz`) touch no database and are never queued
/// behind the app's requests: the runner reads the processor's progress through them, and
/// a stats request stuck behind requests waiting on a lock would make a running batch look
/// abandoned.
pub fn router_with_threads(state: AppState, threads: u32) -> Router {
    let admin = Router::new()
        .route("/admin", get(admin_dashboard))
        .route("/api/batches", post(create_batch))
        .route("/api/batches/{id}/status", get(batch_status))
        .route("/api/settings", get(settings))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    let mut app = Router::new()
        .route("/api/registrations", post(register))
        .route("/api/registrations/updates", get(registration_updates))
        .merge(admin);
    if threads > 0 {
        app = app.route_layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            threads as usize,
        ));
    }
    let worker = state.worker;
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/stats", get(stats_json))
        .route("/healthz", get(healthz))
        .merge(app)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |m| m.as_str());
                    info_span!("request", method = %req.method(), route, worker)
                })
                // A 503 for a lock error is the server doing its job: counted, not an error.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts every request by route and status, with its latency.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe(&route, response.status().as_u16(), started.elapsed());
    response
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == ADMIN_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Compares without stopping at the first differing byte.
fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Admin routes: a bearer token, or the cookie `/admin?token=...` sets.
async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let expected = &*state.admin_token;
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let from_query = Query::<TokenQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.token)
        .filter(|t| same_token(t, expected));
    let ok = bearer.as_deref().is_some_and(|t| same_token(t, expected))
        || cookie_token(headers).is_some_and(|t| same_token(&t, expected))
        || from_query.is_some();
    if !ok {
        return AppError::Unauthorized.into_response();
    }
    let mut response = next.run(req).await;
    if from_query.is_some() {
        let cookie = format!("{ADMIN_COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "worker": state.worker, "pid": std::process::id()}))
}

async fn stats_json(State(state): State<AppState>) -> Json<stats::WorkerStats> {
    Json(state.metrics.stats(state.worker, &state.store))
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.clone();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.worker, &store),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRegistration {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Registration {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub qr_payload: String,
}

/// POST /api/registrations: a kiosk registers a person.
async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewRegistration>,
) -> Result<Response, AppError> {
    let name = body.name.trim().to_owned();
    let email = body.email.trim().to_ascii_lowercase();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::Invalid {
            field: "name",
            reason: "must be 1 to 200 characters".into(),
        });
    }
    if let Some(problem) = photos::email_problem(&email) {
        return Err(AppError::Invalid {
            field: "email",
            reason: format!("{problem}: must be an address like name@example.org"),
        });
    }
    let payload = photos::registration_payload(&email);
    let (reg, created) = state
        .db(move |store| {
            store.write(ops::REGISTER, |tx| {
                let existing = tx.query_i64(
                    "SELECT id FROM registrations WHERE qr_payload = ?1",
                    &[Value::from(payload.as_str())],
                )?;
                let (id, created) = match existing {
                    Some(id) => (id, false),
                    None => (
                        tx.insert(
                            "INSERT INTO registrations (name, email, qr_payload) VALUES (?1, ?2, ?3)",
                            &[Value::from(name.as_str()), Value::from(email.as_str()), Value::from(payload.as_str())],
                        )?,
                        true,
                    ),
                };
                Ok((
                    Registration {
                        id,
                        name: name.clone(),
                        email: email.clone(),
                        qr_payload: payload.clone(),
                    },
                    created,
                ))
            })
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(reg)).into_response())
}

#[derive(Debug, Deserialize)]
struct UpdatesQuery {
    #[serde(default)]
    since: i64,
}

/// GET /api/registrations/updates?since=ID: the dashboard's live polling.
async fn registration_updates(
    State(state): State<AppState>,
    query: Result<Query<UpdatesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(format!("since: {}", e.body_text())))?;
    let since = q.since;
    let rows = state
        .db(move |store| {
            store.read(ops::REGISTRATION_UPDATES, |tx| {
                tx.query(
                    "SELECT r.id, r.name, r.email, r.created_at, \
                        (SELECT coalesce(sum(p.photo_count), 0) FROM persons p WHERE p.registration_id = r.id), \
                        (SELECT p.upload_state FROM persons p WHERE p.registration_id = r.id ORDER BY p.id DESC LIMIT 1) \
                     FROM registrations r WHERE r.id > ?1 ORDER BY r.id LIMIT 100",
                    &[Value::Int(since)],
                )
            })
        })
        .await?;
    let last_id = rows.last().and_then(|r| r[0].as_i64()).unwrap_or(since);
    // Typed rows serialise without building a map per row (this is the hot polling path).
    let registrations: Vec<RegistrationUpdate<'_>> = rows
        .iter()
        .map(|r| RegistrationUpdate {
            id: r[0].as_i64(),
            name: r[1].as_str(),
            email: r[2].as_str(),
            created_at: r[3].as_str(),
            photo_count: r[4].as_i64().unwrap_or(0),
            upload_state: r[5].as_str(),
        })
        .collect();
    Ok(Json(Updates {
        registrations,
        last_id,
    })
    .into_response())
}

#[derive(Serialize)]
struct RegistrationUpdate<'a> {
    id: Option<i64>,
    name: Option<&'a str>,
    email: Option<&'a str>,
    created_at: Option<&'a str>,
    photo_count: i64,
    upload_state: Option<&'a str>,
}

#[derive(Serialize)]
struct Updates<'a> {
    registrations: Vec<RegistrationUpdate<'a>>,
    last_id: i64,
}

/// One batch's status row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchStatus {
    pub id: i64,
    pub status: String,
    pub total: i64,
    pub processed: i64,
    pub failed: i64,
    pub persons: i64,
    pub uploaded: i64,
    pub current_photo: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: Option<String>,
}

pub(crate) const BATCH_COLUMNS: &str =
    "id, status, total, processed, failed, persons, uploaded, current_photo, started_at, finished_at, updated_at";

pub(crate) fn batch_from_row(r: &[Value]) -> BatchStatus {
    let text = |i: usize| r.get(i).and_then(Value::as_str).map(str::to_owned);
    let int = |i: usize| r.get(i).and_then(Value::as_i64).unwrap_or(0);
    BatchStatus {
        id: int(0),
        status: text(1).unwrap_or_default(),
        total: int(2),
        processed: int(3),
        failed: int(4),
        persons: int(5),
        uploaded: int(6),
        current_photo: text(7),
        started_at: text(8),
        finished_at: text(9),
        updated_at: text(10),
    }
}

fn read_batch(tx: &mut dyn Tx, id: i64) -> Result<Option<BatchStatus>, storage::DbError> {
    let rows = tx.query(
        &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?1"),
        &[Value::Int(id)],
    )?;
    Ok(rows.first().map(|r| batch_from_row(r)))
}

/// GET /api/batches/{id}/status: processing status polling.
async fn batch_status(
    State(state): State<AppState>,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<BatchStatus>, AppError> {
    let Path(id) =
        path.map_err(|e| AppError::BadRequest(format!("batch id: {}", e.body_text())))?;
    state
        .db(move |store| store.read(ops::BATCH_STATUS, |tx| read_batch(tx, id)))
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("batch {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBatch {
    /// A folder of photos on the server's disk.
    pub dir: String,
}

/// POST /api/batches: start processing a folder; answers at once, processing runs behind.
///
/// The folder must be inside the photo root once resolved (403 otherwise, naming the root).
/// The same folder is the same batch. Whoever processes a batch holds its claim
/// ([`processor::claim_batch`]), so across all workers at most one processor runs a batch,
/// and a POST that finds the claim taken leaves the batch to that processor
/// (`already_running`) without touching its status. A POST that gets the claim sets the
/// batch `running` and starts a processor ([`processor::start_batch`]), which ends by setting
/// it `done`: a finished batch posted again is run again (nothing is recorded twice) and ends
/// `done` again; a batch left `running` by a worker that died is taken over.
async fn create_batch(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewBatch>,
) -> Result<Response, AppError> {
    if !state.runs_processor {
        return Err(AppError::Conflict(
            "this server runs with --role web and does not process batches: post the batch to a server with --role all".into(),
        ));
    }
    let root = state.photo_root.clone();
    let (dir, photos) =
        tokio::task::spawn_blocking(move || batch_photos(&root, &body.dir)).await??;
    let total = photos.len() as i64;
    let source = dir.display().to_string();
    let (batch_id, created) = state
        .db(move |store| find_or_create_batch(store, &source, total))
        .await?;
    let claim = {
        let (store, dirs) = (state.store.clone(), state.dirs.clone());
        tokio::task::spawn_blocking(move || processor::claim_batch(&store, &dirs, batch_id))
            .await??
    };
    let Some(claim) = claim else {
        info!(
            batch_id,
            "batch already being processed; left to its processor"
        );
        return Ok(accepted(batch_id, total, true));
    };
    if !created {
        // Ours now: nobody else processes it. If this write fails (a lock error), the claim
        // is dropped with the error and the batch keeps its status.
        state
            .db(move |store| mark_batch_running(store, batch_id, total))
            .await?;
    }
    processor::start_batch(
        claim,
        state.store.clone(),
        state.processor.clone(),
        state.dirs.clone(),
        photos,
        state.metrics.clone(),
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("cannot start the processor: {e}")))?;
    info!(batch_id, total, "batch accepted");
    Ok(accepted(batch_id, total, false))
}

/// The folder a POST names, resolved (symbolic links included), and its photos: 422 when it
/// does not exist, is not a folder or cannot be listed; 403, naming the photo root, when it
/// is not inside the root (itself resolved).
fn batch_photos(root: &FsPath, dir: &str) -> Result<(PathBuf, Vec<PathBuf>), AppError> {
    let root = std::fs::canonicalize(root).map_err(|e| {
        AppError::Internal(anyhow::anyhow!(
            "the photo root {} cannot be resolved: {e}",
            root.display()
        ))
    })?;
    let resolved = std::fs::canonicalize(dir).map_err(|e| AppError::Invalid {
        field: "dir",
        reason: format!("{dir}: {e}"),
    })?;
    if !resolved.starts_with(&root) {
        return Err(AppError::Forbidden(format!(
            "dir {dir} (resolved: {}) is not inside the photo root {}; this server takes batches from there only (serve --photo-root)",
            resolved.display(),
            root.display()
        )));
    }
    if !resolved.is_dir() {
        return Err(AppError::Invalid {
            field: "dir",
            reason: format!("{} is not a folder", resolved.display()),
        });
    }
    let photos = processor::list_photos(&resolved).map_err(|e| AppError::Invalid {
        field: "dir",
        reason: format!("cannot list {}: {e}", resolved.display()),
    })?;
    Ok((resolved, photos))
}

/// The batch of a folder, or a new one already `running` (nobody can be processing a batch
/// that did not exist; if another POST claims it first, that one processes it); whether it
/// was created.
fn find_or_create_batch(
    store: &Store,
    source: &str,
    total: i64,
) -> Result<(i64, bool), storage::DbError> {
    store.write(ops::CREATE_BATCH, |tx| {
        let existing = tx.query_i64(
            "SELECT id FROM batches WHERE source_dir = ?1",
            &[Value::from(source)],
        )?;
        match existing {
            Some(id) => Ok((id, false)),
            None => tx
                .insert(
                    concat!(
                        "INSERT INTO batches (source_dir, status, total, started_at, updated_at) VALUES (?1, 'running', ?2, ",
                        now_sql!(),
                        ", ",
                        now_sql!(),
                        ")"
                    ),
                    &[Value::from(source), Value::Int(total)],
                )
                .map(|id| (id, true)),
        }
    })
}

/// A batch found again, now claimed: `running` with its folder's photo count.
fn mark_batch_running(store: &Store, batch_id: i64, total: i64) -> Result<usize, storage::DbError> {
    store.write(ops::CREATE_BATCH, |tx| {
        tx.execute(
            concat!(
                "UPDATE batches SET status = 'running', total = ?2, finished_at = NULL, updated_at = ",
                now_sql!(),
                " WHERE id = ?1"
            ),
            &[Value::Int(batch_id), Value::Int(total)],
        )
    })
}

/// POST /api/batches's answer (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAccepted {
    pub batch_id: i64,
    /// Photos in the folder.
    pub photos: i64,
    /// Another processor holds the batch's claim: it was left to that one.
    pub already_running: bool,
}

fn accepted(batch_id: i64, total: i64, already_running: bool) -> Response {
    let body = BatchAccepted {
        batch_id,
        photos: total,
        already_running,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// GET /api/settings: the settings this worker was started with and the effective settings
/// of every connection it opened.
async fn settings(State(state): State<AppState>) -> Json<WorkerSettingsReport> {
    Json(WorkerSettingsReport {
        worker: state.worker,
        pid: std::process::id(),
        sqlite_version: storage::sqlite_version().to_owned(),
        requested: RequestedSettings {
            storage: state.store.config().clone(),
            retry: (*state.retry).clone(),
            processor: (*state.processor).clone(),
        },
        effective: state.store.effective_settings(),
    })
}

/// GET /admin: the admin dashboard page.
async fn admin_dashboard(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    let view = state.db(admin::load).await?;
    Ok(Html(admin::render(&view, state.worker)))
}
