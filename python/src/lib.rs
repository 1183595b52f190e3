//! `rsp._rsp`: the native half of the Python package. It holds a GPU context and a
//! model on the GPU and runs the library's one entry point, `rsp::explain::explain`,
//! with the GIL released; arrays cross as float32 numpy arrays (read in place, returned
//! as new arrays). The Python half (`python/rsp/__init__.py`) adds the friendly API.
//!
//! Errors, by the library's kind (`rsp::error`), worded for Python (options by their
//! keyword, `compare_k`, not the command line's `--compare-k`): bad arrays, names,
//! targets, options, images and weights files raise `ValueError`, missing files
//! `FileNotFoundError`, other I/O `OSError`, the device (none found, lost, a failed
//! readback) `RuntimeError`.
//!
//! An [`Engine`] holds its GPU device until `close()` (Python's `with` block) or until
//! it is collected; [`open_engines`] counts the devices held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

mod eval;

use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use rsp::error::Caller;
use rsp::explain::{explain, ExplainOptions, InitKind, Method};
use rsp::gpu::{
    list_adapters, AdapterChoice, Autotune, Backend, ContextOptions, GpuContext, Precision,
};
use rsp::models::gpu::GpuModel;
use rsp::models::hub::{self, WeightSources};
use rsp::models::weights::TensorFile;
use rsp::preprocess::{load_image, preprocess_for, DynamicImage, Prepared};
use rsp::render::{heatmap_image, overlay, png_bytes, ColorMap, RgbImage};
use rsp::{ErrorKind, Model, Tensor};

/// A library error as the Python exception of its kind (`rsp::error::kind`): invalid
/// input `ValueError`, a missing file `FileNotFoundError`, other I/O `OSError`, the
/// device and anything else `RuntimeError`.
fn to_py(e: anyhow::Error) -> PyErr {
    let message = rsp::error::message(&e, Caller::Python);
    match rsp::error::kind(&e) {
        ErrorKind::InvalidInput => PyValueError::new_err(message),
        ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        ErrorKind::Io => PyOSError::new_err(message),
        ErrorKind::Device | ErrorKind::Other => PyRuntimeError::new_err(message),
    }
}

fn backend(name: &str) -> PyResult<Backend> {
    name.parse::<Backend>()
        .map_err(|e| PyValueError::new_err(format!("backend: {e}")))
}

/// The GPU options every Python entry point takes, as the command line's flags
/// (`--backend`, `--adapter`, `--precision`, `--autotune`, `--exact-kernels`) set them.
fn context_options(
    backend: &str,
    adapter: Option<&str>,
    precision: &str,
    autotune: &str,
    exact_kernels: bool,
) -> PyResult<ContextOptions> {
    let adapter = adapter
        .map(|a| a.parse::<AdapterChoice>())
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("adapter {e}")))?;
    let precision = Precision::from_name(precision).ok_or_else(|| {
        PyValueError::new_err(format!("precision '{precision}': expected 'f32' or 'f16'"))
    })?;
    let autotune = autotune
        .parse::<Autotune>()
        .map_err(|e| PyValueError::new_err(format!("autotune: {e}")))?;
    Ok(ContextOptions {
        backend: self::backend(backend)?,
        adapter,
        precision,
        autotune,
        exact_kernels,
        ..Default::default()
    })
}

/// A float32 numpy array as a host tensor (one copy, in C order).
fn tensor(name: &str, a: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let arr: PyReadonlyArrayDyn<'_, f32> = a.extract().map_err(|_| {
        let dtype = a
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| a.get_type().to_string());
        PyValueError::new_err(format!(
            "{name}: expected a float32 numpy array, got {dtype}"
        ))
    })?;
    let shape = arr.shape().to_vec();
    let data: Vec<f32> = arr.as_array().iter().copied().collect();
    Ok(Tensor::new(shape, data))
}

/// `x` as a batch of images: float32 `[N, 3, H, W]`, N ≥ 1.
fn image_batch(x: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let input = tensor("x", x)?;
    if input.shape.len() != 4 || input.shape[1] != 3 || input.shape[0] == 0 {
        return Err(PyValueError::new_err(format!(
            "x: expected a float32 array of shape [N, 3, H, W] with N >= 1, got {:?}",
            input.shape
        )));
    }
    Ok(input)
}

/// A host tensor as a new numpy array of its shape.
fn array<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let flat = PyArray1::from_vec(py, t.data.clone());
    Ok(flat.reshape(t.shape.clone())?.into_any())
}

/// Every adapter wgpu finds for `backend`, as dicts.
#[pyfunction]
#[pyo3(signature = (backend = "auto"))]
fn adapters<'py>(py: Python<'py>, backend: &str) -> PyResult<Bound<'py, PyList>> {
    let b = self::backend(backend)?;
    let list = PyList::empty(py);
    for a in py.detach(|| list_adapters(b)) {
        let d = PyDict::new(py);
        d.set_item("index", a.index)?;
        d.set_item("name", &a.name)?;
        d.set_item("pci_bus_id", &a.pci_bus_id)?;
        d.set_item("backend", format!("{:?}", a.backend).to_lowercase())?;
        d.set_item("type", format!("{:?}", a.device_type))?;
        d.set_item("driver", &a.driver)?;
        d.set_item("max_storage_binding", a.max_storage_binding)?;
        d.set_item("max_buffer", a.max_buffer)?;
        d.set_item("max_invocations", a.max_invocations)?;
        let features = PyList::empty(py);
        if a.shader_f16 {
            features.append("shader-f16")?;
        }
        if let Some(size) = a.fixed_subgroup {
            features.append(format!("subgroup-{size}"))?;
        }
        d.set_item("features", features)?;
        list.append(d)?;
    }
    Ok(list)
}

/// An image file preprocessed as the CLI does (the GIL released while it decodes).
fn prepared(py: Python<'_>, path: &Path, size: u32) -> PyResult<Prepared> {
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such file",
            path.display()
        )));
    }
    if size == 0 {
        return Err(PyValueError::new_err("size must be at least 1"));
    }
    py.detach(|| anyhow::Ok(preprocess_for(&load_image(path)?, size)))
        .map_err(to_py)
}

/// Decoded RGB pixels (uint8 `[H, W, 3]`, e.g. a PIL image) preprocessed as an image
/// file is: float32 `[3, size, size]`.
#[pyfunction]
#[pyo3(signature = (rgb, size = 224))]
fn preprocess_rgb<'py>(
    py: Python<'py>,
    rgb: PyReadonlyArrayDyn<'py, u8>,
    size: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = rgb.shape().to_vec();
    if shape.len() != 3 || shape[2] != 3 || shape[0] == 0 || shape[1] == 0 {
        return Err(PyValueError::new_err(format!(
            "image: expected RGB pixels, uint8 [H, W, 3], got shape {shape:?}"
        )));
    }
    if size == 0 {
        return Err(PyValueError::new_err("size must be at least 1"));
    }
    let raw: Vec<u8> = rgb.as_array().iter().copied().collect();
    let img = DynamicImage::ImageRgb8(image_rgb(shape[1], shape[0], raw));
    let prepared = py.detach(|| preprocess_for(&img, size));
    array(py, &prepared.tensor)
}

/// An image file, preprocessed as the CLI does (shorter side to `size·256/224`, centre
/// crop `size`, ImageNet normalisation): float32 `[3, size, size]`.
#[pyfunction]
#[pyo3(signature = (path, size = 224))]
fn load_image_array<'py>(py: Python<'py>, path: PathBuf, size: u32) -> PyResult<Bound<'py, PyAny>> {
    let t = prepared(py, &path, size)?.tensor;
    array(py, &t)
}

/// An image file's crop as the CLI takes it (the photo its overlays cover): uint8
/// `[size, size, 3]`.
#[pyfunction]
#[pyo3(signature = (path, size = 224))]
fn load_photo<'py>(py: Python<'py>, path: PathBuf, size: u32) -> PyResult<Bound<'py, PyAny>> {
    let rgb = prepared(py, &path, size)?.cropped;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let flat = PyArray1::from_vec(py, rgb.into_raw());
    Ok(flat.reshape(vec![h, w, 3])?.into_any())
}

/// A uint8 `[H, W, 3]` picture as PNG bytes.
#[pyfunction]
fn encode_png<'py>(
    py: Python<'py>,
    rgb: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let shape = rgb.shape().to_vec();
    if shape.len() != 3 || shape[2] != 3 {
        return Err(PyValueError::new_err(format!(
            "rgb: expected a uint8 array of shape [H, W, 3], got {shape:?}"
        )));
    }
    let raw: Vec<u8> = rgb.as_array().iter().copied().collect();
    let img = image_rgb(shape[1], shape[0], raw);
    let png = png_bytes(&img).map_err(to_py)?;
    Ok(PyBytes::new(py, &png))
}

/// The relevance file (`rsp run --save-relevance`'s format, `rsp::explain::relevance_file`)
/// of float32 `relevance`, `heatmap`, `init`, `logits` and int64 `target`.
#[pyfunction]
fn relevance_file<'py>(
    py: Python<'py>,
    relevance: &Bound<'py, PyAny>,
    heatmap: &Bound<'py, PyAny>,
    init: &Bound<'py, PyAny>,
    logits: &Bound<'py, PyAny>,
    target: Vec<i64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = rsp::explain::relevance_file::relevance_bytes(
        &tensor("relevance", relevance)?,
        &tensor("heatmap", heatmap)?,
        &tensor("init", init)?,
        &tensor("logits", logits)?,
        &target,
    )
    .map_err(to_py)?;
    Ok(PyBytes::new(py, &bytes))
}

/// An `[H, W]` map on colour map `cmap` (`rsp::render::ColorMap`; signed maps scaled by
/// their max |value|), over `image` (uint8 `[H, W, 3]`) with opacity `alpha` if given:
/// uint8 `[H, W, 3]`.
#[pyfunction]
#[pyo3(signature = (heatmap, image = None, cmap = "bwr", alpha = 0.5))]
fn render_map<'py>(
    py: Python<'py>,
    heatmap: &Bound<'py, PyAny>,
    image: Option<PyReadonlyArrayDyn<'py, u8>>,
    cmap: &str,
    alpha: f32,
) -> PyResult<Bound<'py, PyAny>> {
    let cmap = ColorMap::from_name(cmap).ok_or_else(|| {
        let names: Vec<&str> = ColorMap::ALL.iter().map(|c| c.name()).collect();
        PyValueError::new_err(format!(
            "unknown colour map '{cmap}' (one of {})",
            names.join(", ")
        ))
    })?;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(PyValueError::new_err(format!(
            "alpha must be in [0, 1], got {alpha}"
        )));
    }
    let map = tensor("heatmap", heatmap)?;
    if map.shape.len() != 2 {
        return Err(PyValueError::new_err(format!(
            "heatmap: expected shape [H, W], got {:?}",
            map.shape
        )));
    }
    let (h, w) = (map.shape[0], map.shape[1]);
    let rgb = match image {
        None => heatmap_image(&map, cmap),
        Some(img) => {
            if img.shape() != [h, w, 3] {
                return Err(PyValueError::new_err(format!(
                    "image: expected a uint8 array of shape [{h}, {w}, 3] like the heatmap, got {:?}",
                    img.shape()
                )));
            }
            let raw: Vec<u8> = img.as_array().iter().copied().collect();
            let photo = image_rgb(w, h, raw);
            overlay(&photo, &map, cmap, alpha)
        }
    };
    let flat = PyArray1::from_vec(py, rgb.into_raw());
    Ok(flat.reshape(vec![h, w, 3])?.into_any())
}

fn image_rgb(w: usize, h: usize, raw: Vec<u8>) -> RgbImage {
    RgbImage::from_raw(w as u32, h as u32, raw).expect("shape checked")
}

/// How many engines hold a GPU device now (opened and not yet closed or collected).
static OPEN_ENGINES: AtomicUsize = AtomicUsize::new(0);

/// The GPU half of an engine: the device and the model's buffers on it. Dropping it
/// releases both (the buffers first: fields drop in order).
struct Loaded {
    model: GpuModel,
    ctx: GpuContext,
}

impl Loaded {
    fn new(ctx: GpuContext, model: GpuModel) -> Self {
        OPEN_ENGINES.fetch_add(1, Ordering::SeqCst);
        Loaded { ctx, model }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        OPEN_ENGINES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many engines hold a GPU device (for tests of `close()` and `with`).
#[pyfunction]
fn open_engines() -> usize {
    OPEN_ENGINES.load(Ordering::SeqCst)
}

/// A model on one GPU, ready to explain.
#[pyclass(module = "rsp._rsp", frozen)]
struct Engine {
    /// `None` once closed. Work holds a read lock while it runs (with the GIL
    /// released); `close` waits for it.
    loaded: RwLock<Option<Loaded>>,
    adapter: String,
    num_classes: usize,
    describe: String,
    readout: &'static str,
    class_names: Option<Vec<String>>,
    input_size: Option<usize>,
    explain_layer: Option<String>,
}

#[pymethods]
impl Engine {
    /// From a weights file, a hub model name (`vgg16`, `resnet50`, ...), or a dict of
    /// float32 arrays in torchvision naming.
    #[new]
    #[pyo3(signature = (
        weights = None, model = None, tensors = None, backend = "auto", precision = "f32",
        explain_layer = None, autotune = "off", exact_kernels = false, adapter = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        weights: Option<PathBuf>,
        model: Option<String>,
        tensors: Option<Bound<'_, PyDict>>,
        backend: &str,
        precision: &str,
        explain_layer: Option<String>,
        autotune: &str,
        exact_kernels: bool,
        adapter: Option<&str>,
    ) -> PyResult<Self> {
        let opts = context_options(backend, adapter, precision, autotune, exact_kernels)?;
        let file = match (weights, model, tensors) {
            (Some(path), None, None) => {
                if !path.exists() {
                    return Err(PyFileNotFoundError::new_err(format!(
                        "{}: no such weights file",
                        path.display()
                    )));
                }
                if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
                {
                    let model = py.detach(|| Model::from_file(&path)).map_err(to_py)?;
                    return engine_from_model(py, model, &opts, explain_layer);
                }
                py.detach(|| TensorFile::read(&path)).map_err(to_py)?
            }
            (None, Some(name), None) => {
                let src = WeightSources::from_env(false, false);
                let path = py
                    .detach(|| hub::resolve_model(&name, &src))
                    .map_err(to_py)?;
                py.detach(|| TensorFile::read(&path)).map_err(to_py)?
            }
            (None, None, Some(dict)) => {
                let mut floats = BTreeMap::new();
                for (k, v) in dict.iter() {
                    let name: String = k.extract()?;
                    let t = tensor(&format!("state_dict['{name}']"), &v)?;
                    floats.insert(name, t);
                }
                TensorFile {
                    path: Path::new("state_dict").to_path_buf(),
                    floats,
                    ints: BTreeMap::new(),
                    metadata: BTreeMap::new(),
                }
            }
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of weights=, model= or state_dict=",
                ))
            }
        };
        let model = Model::from_tensors(&file).map_err(to_py)?;
        engine_from_model(py, model, &opts, explain_layer)
    }

    /// Releases the GPU device and the model's buffers (after any call still running);
    /// later calls raise `ValueError`. Closing twice is harmless.
    fn close(&self, py: Python<'_>) {
        let loaded = py.detach(|| {
            let mut slot = self.loaded.write().unwrap_or_else(|p| p.into_inner());
            slot.take()
        });
        py.detach(move || drop(loaded));
    }

    /// Whether `close()` has released the device.
    #[getter]
    fn closed(&self) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// The size the model was exported for (an ONNX graph with a static input), if any.
    #[getter]
    fn input_size(&self) -> Option<usize> {
        self.input_size
    }

    /// The layer RSP's initial relevance and Grad-CAM start from.
    #[getter]
    fn explain_layer(&self) -> Option<String> {
        self.explain_layer.clone()
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.num_classes
    }

    #[getter]
    fn description(&self) -> String {
        self.describe.clone()
    }

    /// `softmax` or `sigmoid` (multi-label models, from the weights' metadata).
    #[getter]
    fn readout(&self) -> &'static str {
        self.readout
    }

    /// Class names from the weights' metadata, if any.
    #[getter]
    fn class_names(&self) -> Option<Vec<String>> {
        self.class_names.clone()
    }

    #[getter]
    fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Explains `x` (float32 `[N, 3, H, W]`, normalised) in sub-batches of
    /// `batch_size`; returns a dict of arrays.
    #[pyo3(signature = (
        x,
        method = ExplainOptions::DEFAULT.method.name(),
        targets = None,
        init = ExplainOptions::DEFAULT.init.name(),
        compare_k = ExplainOptions::DEFAULT.compare_k,
        batch_size = ExplainOptions::DEFAULT.batch_size,
        record_layers = ExplainOptions::DEFAULT.record_layers,
        smooth = None,
        noise = ExplainOptions::DEFAULT.noise,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        method: &str,
        targets: Option<Vec<i64>>,
        init: &str,
        compare_k: usize,
        batch_size: usize,
        record_layers: bool,
        smooth: Option<usize>,
        noise: f32,
    ) -> PyResult<Bound<'py, PyDict>> {
        let input = image_batch(x)?;
        let n = input.shape[0];
        let method = Method::from_name(method).ok_or_else(|| {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            PyValueError::new_err(format!(
                "unknown method '{method}' (one of {})",
                names.join(", ")
            ))
        })?;
        let init = InitKind::from_name(init).ok_or_else(|| {
            let names: Vec<&str> = InitKind::ALL.iter().map(|k| k.name()).collect();
            PyValueError::new_err(format!(
                "unknown init '{init}' (one of {})",
                names.join(", ")
            ))
        })?;
        let options = ExplainOptions {
            method,
            init,
            compare_k,
            batch_size,
            smooth,
            noise,
            record_layers,
        };
        options.validate().map_err(to_py)?;
        let targets = match targets {
            None => None,
            Some(t) => {
                let t = if t.len() == 1 && n > 1 {
                    vec![t[0]; n]
                } else {
                    t
                };
                if t.len() != n {
                    return Err(PyValueError::new_err(format!(
                        "{} targets given for {n} images",
                        t.len()
                    )));
                }
                let classes = self.num_classes;
                if let Some(bad) = t.iter().find(|&&c| c < 0 || c as usize >= classes) {
                    return Err(PyValueError::new_err(format!(
                        "target class {bad} is out of range (the model has {classes} classes)"
                    )));
                }
                Some(t.into_iter().map(|c| c as usize).collect::<Vec<_>>())
            }
        };
        let mut parts = Vec::new();
        for start in (0..n).step_by(batch_size) {
            let range = start..(start + batch_size).min(n);
            let req = options.request(targets.as_ref().map(|t| t[range.clone()].to_vec()), None);
            let sub = input.slice0(range);
            let e = py
                .detach(|| self.run(|l| explain(&l.ctx, &l.model, &sub, &req)))
                .map_err(to_py)?;
            parts.push(e);
        }
        let e = rsp::Explanation::concat0(parts);
        let out = PyDict::new(py);
        out.set_item("relevance", array(py, &e.relevance)?)?;
        out.set_item("heatmap", array(py, &e.heatmap())?)?;
        out.set_item("init", array(py, &e.init)?)?;
        out.set_item("logits", array(py, &e.logits)?)?;
        let target: Vec<i64> = e
            .target
            .iter()
            .map(|&t| {
                if t == rsp::explain::NO_TARGET {
                    -1
                } else {
                    t as i64
                }
            })
            .collect();
        out.set_item("target", target.into_pyarray(py))?;
        let layers = PyDict::new(py);
        for (name, t) in &e.layers {
            layers.set_item(name, array(py, t)?)?;
        }
        out.set_item("layers", layers)?;
        Ok(out)
    }

    /// Logits `[N, classes]` of `x` (float32 `[N, 3, H, W]`, normalised).
    fn logits<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let input = image_batch(x)?;
        let logits = py
            .detach(|| self.run(|l| l.model.predict(&l.ctx, &input)))
            .map_err(to_py)?;
        array(py, &logits)
    }
}

impl Engine {
    /// `work` on the loaded device, or an error once the engine is closed.
    fn run<T>(&self, work: impl FnOnce(&Loaded) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let slot = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(loaded) => work(loaded),
            None => Err(rsp::error::invalid(
                "this Explainer is closed (its GPU device was released); create a new one".into(),
            )),
        }
    }
}

/// The defaults of `Explainer.explain` (`rsp::ExplainOptions::DEFAULT`, the command
/// line's too).
#[pyfunction]
fn explain_defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = ExplainOptions::DEFAULT;
    let out = PyDict::new(py);
    out.set_item("method", d.method.name())?;
    out.set_item("init", d.init.name())?;
    out.set_item("compare_k", d.compare_k)?;
    out.set_item("batch_size", d.batch_size)?;
    out.set_item("record_layers", d.record_layers)?;
    out.set_item("smooth", d.smooth)?;
    out.set_item("noise", d.noise)?;
    Ok(out)
}

/// The names the engine accepts: `methods`, `inits`, `colour_maps` (the package's
/// `Literal` types are checked against them).
#[pyfunction]
fn names(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("methods", Method::ALL.map(Method::name).to_vec())?;
    out.set_item("inits", InitKind::ALL.map(InitKind::name).to_vec())?;
    out.set_item("colour_maps", ColorMap::ALL.map(ColorMap::name).to_vec())?;
    Ok(out)
}

#[pymodule]
fn _rsp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(explain_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(load_image_array, m)?)?;
    m.add_function(wrap_pyfunction!(render_map, m)?)?;
    m.add_function(wrap_pyfunction!(load_photo, m)?)?;
    m.add_function(wrap_pyfunction!(encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(relevance_file, m)?)?;
    m.add_function(wrap_pyfunction!(eval::eval_run, m)?)?;
    m.add_function(wrap_pyfunction!(eval::eval_merge, m)?)?;
    m.add_function(wrap_pyfunction!(eval::eval_sensitivity, m)?)?;
    m.add_function(wrap_pyfunction!(eval::write_sensitivity, m)?)?;
    m.add_class::<eval::LoggedRun>()?;
    m.add_class::<eval::EvalWorker>()?;
    m.add_function(wrap_pyfunction!(preprocess_rgb, m)?)?;
    m.add_function(wrap_pyfunction!(open_engines, m)?)?;
    m.add_function(wrap_pyfunction!(names, m)?)?;
    m.add_class::<Engine>()?;
    Ok(())
}

/// An [`Engine`] on the GPU for `model`, from the explanation layer asked for.
fn engine_from_model(
    py: Python<'_>,
    mut model: Model,
    opts: &ContextOptions,
    explain_layer: Option<String>,
) -> PyResult<Engine> {
    if let Some(layer) = &explain_layer {
        model.set_explain_layer(layer).map_err(to_py)?;
    }
    let loaded = py
        .detach(|| {
            let ctx = GpuContext::new(opts)?;
            let gpu = GpuModel::upload(&ctx, &model);
            anyhow::Ok(Loaded::new(ctx, gpu))
        })
        .map_err(to_py)?;
    Ok(Engine {
        adapter: loaded.ctx.adapter.name.clone(),
        loaded: RwLock::new(Some(loaded)),
        num_classes: model.num_classes(),
        describe: model.describe(),
        readout: model.readout.name(),
        class_names: model.class_names.clone(),
        input_size: model.input_size.map(|(h, _)| h),
        explain_layer: model.explain_layer().map(str::to_owned),
    })
}
