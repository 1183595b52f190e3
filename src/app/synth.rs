//! `rsp synth`: the command-line arguments of the synthetic benchmark's generator
//! (`crate::eval::synth`).

use anyhow::Result;

use crate::eval::synth::{generate, SynthOptions};

/// `rsp synth` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output directory (created; existing files of the same names are overwritten).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Training images.
    #[arg(long, default_value_t = SynthOptions::default().train)]
    pub train: usize,
    /// Validation images.
    #[arg(long, default_value_t = SynthOptions::default().val)]
    pub val: usize,
    /// Test images.
    #[arg(long, default_value_t = SynthOptions::default().test)]
    pub test: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = SynthOptions::default().size)]
    pub size: u32,
    /// Dataset seed.
    #[arg(long, default_value_t = SynthOptions::default().seed)]
    pub seed: u64,
}

impl SynthArgs {
    /// The generator options these arguments ask for.
    pub fn options(&self) -> SynthOptions {
        SynthOptions {
            train: self.train,
            val: self.val,
            test: self.test,
            size: self.size,
            seed: self.seed,
        }
    }
}

/// Runs `rsp synth`: generates the dataset and prints its summary.
pub fn run(args: &SynthArgs) -> Result<()> {
    let summary = generate(&args.options(), &args.out)?;
    println!("{summary}");
    Ok(())
}
