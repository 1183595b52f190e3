//! `rsp serve`: explain images in a browser page. The model is loaded once; the page
//! (HTML, CSS and JavaScript embedded in the binary, no build step, nothing fetched
//! from elsewhere) uploads images, lists each one's top classes, asks for maps of
//! chosen classes × methods and draws them over the photo with the colour map and
//! opacity chosen in the page (the raw map is sent, so redrawing needs no request).
//! HTTP is axum on tokio; the GPU work is one thread fed by one queue
//! ([`worker`]). Nothing is written to disk: downloads are made on request.
//!
//! The JSON API the page uses:
//! - `GET /api/info`: model, classes, readout, adapter, precision, methods, colour maps;
//! - `POST /api/images?name=FILE` (the file's bytes): id (content hash),
//!   top classes with probabilities; `GET /api/images/{id}/photo.png`: the crop the
//!   maps cover;
//! - `POST /api/explain` `{id, class, method, init}`: the map `[H, W]` and the
//!   relevance `[C, H, W]` as base64 little-endian f32;
//! - `GET /api/relevance?id=&class=&method=&init=`: that map as the CLI's
//!   `--save-relevance` file;
//! - `GET /api/stats`: queue, cache and GPU counters.

pub mod worker;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use self::worker::{content_id, Job, MapKey, Stats, Upload, Worker};
use super::args::{DeviceArgs, IMAGENET_CLASSES};
use crate::error::ErrorKind;
use crate::explain::{Explanation, Init, InitKind, Method};
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::hub::{self, WeightSources};
use crate::models::{Model, Readout};
use crate::preprocess::{load_image_bytes, preprocess_for};
use crate::render::ColorMap;

const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/app.js");
const PAGE_CSS: &str = include_str!("page/style.css");

/// `rsp serve`'s arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Pretrained ImageNet classifier by name (as for `rsp --model`).
    #[arg(long, conflicts_with = "weights")]
    pub model: Option<String>,
    /// Classifier weights (safetensors, torchvision naming).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Never download weights for --model.
    #[arg(long)]
    pub offline: bool,
    /// TCP port (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on. The default answers this machine only; 0.0.0.0 (or ::)
    /// makes the page reachable by others on the network, with no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Methods the page offers, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Crop size the images are preprocessed to (shorter side to size·256/224, centre
    /// crop), as `rsp --size` [default: the size an ONNX model was exported for, else
    /// 224].
    #[arg(long)]
    pub size: Option<u32>,
    /// The layer RSP's initial relevance and Grad-CAM start from, as `rsp
    /// --explain-layer`.
    #[arg(long, value_name = "NAME")]
    pub explain_layer: Option<String>,
    /// Probabilities shown: auto (the weights' own readout), softmax or sigmoid.
    #[arg(long, default_value = "auto")]
    pub readout: String,
    /// GPU memory kept for forward passes of uploaded images, in MiB (least recently
    /// used out).
    #[arg(long, default_value_t = 512)]
    pub cache_mb: u64,
    /// Largest upload accepted, in MiB.
    #[arg(long, default_value_t = 32)]
    pub max_upload_mb: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// What every request handler shares.
struct App {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    info: Value,
    methods: Vec<Method>,
    size: u32,
    /// Largest upload, in bytes.
    max_upload: usize,
}

impl App {
    /// Queues `job` for the GPU thread.
    fn send(&self, job: Job) -> Result<(), ApiError> {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        if self.jobs.send(job).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the GPU thread has stopped".into(),
            ));
        }
        Ok(())
    }

    fn count(&self) {
        self.stats.requests.fetch_add(1, Ordering::SeqCst);
    }
}

/// An error answer: its status and a message the page shows.
struct ApiError(StatusCode, String);

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let status = match crate::error::kind(&e) {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Runs `rsp serve` until Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<()> {
    if let Some(size) = args.size.filter(|&s| s < 8) {
        crate::error::bail_invalid!("--size must be at least 8, got {size}");
    }
    let methods = parse_methods(&args.methods)?;
    let readout = match args.readout.as_str() {
        "auto" => None,
        "softmax" => Some(Readout::Softmax),
        "sigmoid" => Some(Readout::Sigmoid),
        other => crate::error::bail_invalid!("--readout {other:?} is not auto, softmax or sigmoid"),
    };
    let wpath = match (&args.weights, &args.model) {
        (Some(w), _) => w.clone(),
        (None, Some(name)) => {
            hub::resolve_model(name, &WeightSources::from_env(args.offline, false))?
        }
        (None, None) => crate::error::bail_invalid!("give --weights FILE or --model NAME"),
    };
    let mut model = Model::from_file(&wpath)?;
    if let Some(layer) = &args.explain_layer {
        model.set_explain_layer(layer)?;
    }
    let size = args.size.unwrap_or_else(|| model.default_size());
    model.check_input_size(size as usize, size as usize)?;
    if model.num_classes() == 0 {
        crate::error::bail_invalid!(
            "{}: these weights have no classifier; rsp serve explains predictions",
            wpath.display()
        );
    }
    let readout = readout.unwrap_or(model.readout);
    let class_names = class_names(&model);
    let ctx = GpuContext::new(&args.device.context_options())?;
    let gpu = GpuModel::upload(&ctx, &model);
    let stats = Arc::new(Stats::default());
    let info = json!({
        "model": model.describe(),
        "weights": wpath.file_name().map(|n| n.to_string_lossy().into_owned()),
        "classes": model.num_classes(),
        "class_names": class_names,
        "readout": readout.name(),
        "adapter": ctx.adapter.name,
        "backend": format!("{:?}", ctx.adapter.backend).to_lowercase(),
        "precision": args.device.precision.name(),
        "size": size,
        "methods": methods.iter().map(|m| json!({"name": m.name(), "description": m.description()})).collect::<Vec<_>>(),
        "inits": InitKind::ALL.iter().map(|k| json!({"name": k.name(), "description": k.description()})).collect::<Vec<_>>(),
        "cmaps": ColorMap::ALL.iter().map(|c| json!({"name": c.name(), "diverging": c.diverging()})).collect::<Vec<_>>(),
        "cache_limit": args.cache_mb << 20,
        "max_upload": args.max_upload_mb << 20,
    });
    let (tx, rx) = mpsc::channel();
    let worker = Worker {
        ctx,
        model: gpu,
        readout,
        class_names,
        cache_limit: args.cache_mb << 20,
        stats: stats.clone(),
    };
    let gpu_thread = std::thread::Builder::new()
        .name("rsp-gpu".into())
        .spawn(move || worker.run(rx))
        .context("cannot start the GPU thread")?;
    let app = Arc::new(App {
        jobs: tx,
        stats,
        info,
        methods,
        size,
        max_upload: args.max_upload_mb << 20,
    });
    let router = Router::new()
        .route(
            "/",
            get(|| async { page(PAGE_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(PAGE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(PAGE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/info", get(info_handler))
        .route("/api/stats", get(stats_handler))
        .route("/api/images", post(upload_handler))
        .route("/api/images/{id}/photo.png", get(photo_handler))
        .route("/api/explain", post(explain_handler))
        .route("/api/relevance", get(relevance_handler))
        .layer(DefaultBodyLimit::max(args.max_upload_mb << 20))
        .with_state(app.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let addr = SocketAddr::new(args.host, args.port);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        // Listening for Ctrl-C before the URL is printed: a signal that comes right
        // after must stop the server cleanly, not kill it.
        let stop = stop_signal()?;
        let shown = if local.ip().is_unspecified() {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), local.port())
        } else {
            local
        };
        println!("rsp serve: http://{shown}/ (Ctrl-C stops)");
        if local.ip().is_unspecified() {
            println!(
                "note: listening on {local}: the page is reachable by other machines on the network, with no authentication"
            );
        }
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
            .context("the HTTP server failed")
    })?;
    // The last sender goes with the app: the GPU thread finishes its queue and ends.
    drop(app);
    let _ = gpu_thread.join();
    println!("rsp serve: stopped");
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT); registered when called.
#[cfg(unix)]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    Ok(async move {
        interrupt.recv().await;
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The model's class names: its own, ImageNet's for 1000 classes, else the indices.
fn class_names(model: &Model) -> Vec<String> {
    let classes = model.num_classes();
    match &model.class_names {
        Some(n) if n.len() == classes => n.clone(),
        _ if IMAGENET_CLASSES.lines().count() == classes => {
            IMAGENET_CLASSES.lines().map(str::to_owned).collect()
        }
        _ => (0..classes).map(|c| c.to_string()).collect(),
    }
}

/// `--methods`: names of [`Method::ALL`] (empty: all).
fn parse_methods(names: &[String]) -> Result<Vec<Method>> {
    if names.is_empty() {
        return Ok(Method::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let Some(m) = Method::from_name(name) else {
            let known: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            crate::error::bail_invalid!(
                "--methods: unknown method '{name}' (known: {})",
                known.join(", ")
            );
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn info_handler(State(app): State<Arc<App>>) -> Json<Value> {
    app.count();
    Json(app.info.clone())
}

async fn stats_handler(State(app): State<Arc<App>>) -> Json<Value> {
    let s = &app.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::SeqCst);
    let u = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::SeqCst);
    Json(json!({
        "requests": n(&s.requests),
        "forward_passes": n(&s.forward_passes),
        "explanations": n(&s.explanations),
        "forward_reused": n(&s.forward_reused),
        "gpu_running": u(&s.gpu_running),
        "gpu_running_max": u(&s.gpu_running_max),
        "cache_bytes": n(&s.cache_bytes),
        "cache_entries": u(&s.cache_entries),
        "cache_limit": app.info["cache_limit"],
        "queued": u(&s.queued),
    }))
}

/// Waits for the GPU thread's answer.
async fn answer<T>(rx: oneshot::Receiver<T>) -> Result<T, ApiError> {
    rx.await.map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the GPU thread stopped before answering".into(),
        )
    })
}

/// An upload's file name.
#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

async fn upload_handler(
    State(app): State<Arc<App>>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<worker::UploadReply>, ApiError> {
    app.count();
    let name = q.name.unwrap_or_else(|| "upload".into());
    let limit = app.max_upload;
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{name}: over the server's upload limit of {} MiB (rsp serve --max-upload-mb)",
                limit >> 20
            ),
        )
    };
    // Refused from its announced length before a byte is read, else while reading.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    if body.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{name}: the file is empty"),
        ));
    }
    let size = app.size;
    // Decoding and resizing are CPU work: off the async threads, and off the GPU's.
    let up = tokio::task::spawn_blocking(move || -> Result<Upload> {
        let img = load_image_bytes(&body, &name)?;
        let prepared = preprocess_for(&img, size);
        let photo_png = crate::render::png_bytes(&prepared.cropped)?;
        let input = prepared.tensor;
        let shape = [1, input.shape[0], input.shape[1], input.shape[2]];
        Ok(Upload {
            id: content_id(&body),
            name,
            input: input.reshape(&shape),
            photo_png,
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (tx, rx) = oneshot::channel();
    app.send(Job::Upload(up, tx))?;
    Ok(Json(answer(rx).await??))
}

async fn photo_handler(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.count();
    let (tx, rx) = oneshot::channel();
    app.send(Job::Photo(id.clone(), tx))?;
    match answer(rx).await? {
        Some(png) => Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("image {id} is not (or no longer) kept by the server; upload it again"),
        )),
    }
}

/// A map asked for by the page.
#[derive(Deserialize)]
struct MapQuery {
    id: String,
    class: usize,
    method: String,
    /// RSP's initialisation (`gradcam` or `comparative`); ignored by the others.
    init: Option<String>,
}

impl MapQuery {
    fn key(&self, app: &App) -> Result<MapKey, ApiError> {
        let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
        let method = Method::from_name(&self.method)
            .filter(|m| app.methods.contains(m))
            .ok_or_else(|| {
                bad(format!(
                    "method '{}' is not offered by this server",
                    self.method
                ))
            })?;
        let init = match self.init.as_deref() {
            None => InitKind::GradCam,
            Some(n) => InitKind::from_name(n)
                .ok_or_else(|| bad(format!("init '{n}' is not gradcam or comparative")))?,
        };
        let classes = app.info["classes"].as_u64().unwrap_or(0) as usize;
        if self.class >= classes {
            return Err(bad(format!(
                "class {} is out of range (the model has {classes} classes)",
                self.class
            )));
        }
        Ok(MapKey {
            id: self.id.clone(),
            class: self.class,
            method,
            init: match init {
                InitKind::GradCam => Init::GradCam,
                InitKind::Comparative => Init::Comparative {
                    k: crate::explain::ExplainOptions::DEFAULT
                        .compare_k
                        .min(classes),
                },
            },
        })
    }
}

/// Runs one map on the GPU thread.
async fn explain_one(app: &App, q: &MapQuery) -> Result<(String, Explanation), ApiError> {
    let key = q.key(app)?;
    let (tx, rx) = oneshot::channel();
    app.send(Job::Explain(key, tx))?;
    Ok(answer(rx).await??)
}

fn base64_f32(data: &[f32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytemuck::cast_slice(data))
}

async fn explain_handler(
    State(app): State<Arc<App>>,
    Json(q): Json<MapQuery>,
) -> Result<Json<Value>, ApiError> {
    app.count();
    let (_, e) = explain_one(&app, &q).await?;
    let heatmap = e.heatmap();
    let (h, w) = (heatmap.shape[1], heatmap.shape[2]);
    Ok(Json(json!({
        "id": q.id, "class": q.class, "method": q.method,
        "init": q.init.clone().unwrap_or_else(|| InitKind::GradCam.name().into()),
        "target": e.target[0],
        "height": h, "width": w,
        "heatmap": base64_f32(&heatmap.data),
        "relevance_shape": e.relevance.shape,
        "relevance": base64_f32(&e.relevance.data),
    })))
}

async fn relevance_handler(
    State(app): State<Arc<App>>,
    Query(q): Query<MapQuery>,
) -> Result<Response, ApiError> {
    app.count();
    let (name, e) = explain_one(&app, &q).await?;
    let bytes = crate::explain::relevance_file::relevance_file(std::slice::from_ref(&e))?;
    let stem = std::path::Path::new(&name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let file: String = format!("{stem}.{}.{}.safetensors", q.method, q.class)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
