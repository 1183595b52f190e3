//! `rsp inspect FILE`: a model's layers in forward order with their output shapes,
//! the explanation layer marked, so a user can choose `--explain-layer`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::models::graph::Layer;
use crate::Model;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model file (`.onnx` or safetensors).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Input side length the shapes are given for [default: the size an ONNX model was
    /// exported for, else 224].
    #[arg(long)]
    pub size: Option<u32>,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let model = Model::from_file(&args.file)?;
    print!("{}", describe_layers(&model, args.size)?);
    Ok(())
}

/// The listing `rsp inspect` prints.
pub fn describe_layers(model: &Model, size: Option<u32>) -> Result<String> {
    let size = size.unwrap_or_else(|| model.default_size()) as usize;
    model.check_input_size(size, size)?;
    let g = &model.graph;
    let shapes = g.act_shapes(size, size);
    let spatial = g.spatial();
    let mut out = format!("{}\ninput: 3×{size}×{size}\n", model.describe());
    let width = g.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for (i, node) in g.nodes.iter().enumerate() {
        let id = i + 1;
        let kind = match &node.layer {
            Layer::Conv { conv, .. } => {
                let (kh, kw) = conv.kernel();
                format!("conv {kh}×{kw}/{} pad {}", conv.stride, conv.padding)
            }
            Layer::BatchNorm(_) => "batch norm".into(),
            Layer::Relu => "relu".into(),
            Layer::MaxPool(p) => format!(
                "max pool {}/{} pad {}{}",
                p.kernel,
                p.stride,
                p.padding,
                if p.ceil_mode { " ceil" } else { "" }
            ),
            Layer::AvgPool(crate::layers::AvgPool2d::Adaptive { out }) => {
                format!("adaptive avg pool → {}×{}", out.0, out.1)
            }
            Layer::AvgPool(crate::layers::AvgPool2d::Window {
                kernel,
                stride,
                padding,
                ..
            }) => format!("avg pool {kernel}/{stride} pad {padding}"),
            Layer::Flatten => "flatten".into(),
            Layer::Linear(l) => format!("linear {}→{}", l.in_features(), l.out_features()),
            Layer::Add => "add".into(),
            Layer::Concat => format!("concat of {}", node.inputs.len()),
        };
        let shape: Vec<String> = shapes[id].iter().map(usize::to_string).collect();
        let mark = if id == g.explain {
            "  ← explanation layer (default)"
        } else if g.logits == Some(id) {
            "  ← logits"
        } else if spatial[id] && g.is_cut(id) && g.logits.is_none_or(|l| id < l) {
            "  (can be --explain-layer)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>4}  {:<width$}  {:<28} {}{mark}\n",
            id,
            node.name,
            kind,
            shape.join("×")
        ));
    }
    Ok(out)
}
