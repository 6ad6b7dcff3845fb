//! `workbench score --task T --in generations.jsonl [--out scored.jsonl] [--summary FILE]`:
//! offline re-scoring of completions with a task's rewards and evaluation parser.
//!
//! Each line gains `reward` (the sum), `components`, `correct` (d1's evaluation parser, what
//! published accuracies use), `reward_correct` (the training reward's verdict), `score`
//! (Sudoku: fraction of blanks right) and `extracted`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use workbench_core::data::{Example, Origin};
use workbench_core::error_report::render_at;
use workbench_core::fsio::write_atomic;
use workbench_core::tasks::task_by_name;

/// Arguments of `workbench score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Task: gsm8k, math500, countdown, sudoku, amc, aime (and variants, see docs/tasks.md).
    #[arg(long)]
    pub task: String,
    /// JSONL with `completion` and the task's answer fields on each line.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Scored JSONL (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Fail on the first malformed line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// Scores every line; prints the summary to stderr.
pub fn run(args: &ScoreArgs) -> Result<()> {
    let task = task_by_name(&args.task)?;
    let f = std::fs::File::open(&args.input)
        .with_context(|| format!("cannot open {}", args.input.display()))?;
    let mut out_lines = Vec::new();
    let (mut n, mut correct, mut reward_sum, mut cells, mut cells_ok) =
        (0usize, 0usize, 0.0f64, 0.0f64, 0.0f64);
    let mut reward_correct = 0usize;
    let mut reader = std::io::BufReader::new(f);
    let mut buf = Vec::new();
    let mut i = 0usize;
    loop {
        buf.clear();
        let got = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        if got == 0 {
            break;
        }
        i += 1;
        let at = format!("{}:{i}", args.input.display());
        // Invalid UTF-8 costs its line only, like any other malformed line.
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.to_string(),
            Err(e) if args.strict => bail!("{at}: not valid UTF-8: {e}"),
            Err(e) => {
                eprintln!("warning: {at}: skipped: not valid UTF-8: {e}");
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let scored = (|| -> Result<Value> {
            let mut v: Value = serde_json::from_str(&line).context("not valid JSON")?;
            let obj = v.as_object_mut().context("expected a JSON object")?;
            let completion = obj
                .get("completion")
                .and_then(Value::as_str)
                .context("missing string field `completion`")?
                .to_string();
            let ex = Example::new(
                obj.clone(),
                Origin {
                    file: args.input.display().to_string().into(),
                    line: i,
                },
            );
            let r = task.reward(&ex, &completion)?;
            let e = task.evaluate(&ex, &completion)?;
            obj.insert("reward".into(), json!(r.total));
            obj.insert("components".into(), json!(r.components));
            obj.insert("correct".into(), json!(e.correct));
            obj.insert("reward_correct".into(), json!(r.correct));
            obj.insert("score".into(), json!(e.score));
            obj.insert("extracted".into(), json!(e.extracted));
            n += 1;
            correct += usize::from(e.correct);
            reward_correct += usize::from(r.correct);
            reward_sum += r.total;
            cells += e.weight;
            cells_ok += e.score * e.weight;
            Ok(v)
        })();
        match scored {
            Ok(v) => out_lines.push(v.to_string()),
            Err(e) if args.strict => return Err(e.context(at)),
            Err(e) => eprintln!("warning: {at}: skipped: {}", render_at(&at, &e)),
        }
    }
    let accuracy = if n > 0 {
        correct as f64 / n as f64
    } else {
        0.0
    };
    let mut summary = json!({
        "task": task.name(), "file": args.input.display().to_string(), "n": n, "correct": correct,
        "accuracy": accuracy, "mean_reward": if n > 0 { reward_sum / n as f64 } else { 0.0 },
        "reward_accuracy": if n > 0 { reward_correct as f64 / n as f64 } else { 0.0 },
    });
    if task.name().starts_with("sudoku") {
        // d1 reports cell accuracy: correctly filled empty cells over all empty cells.
        summary["cell_accuracy"] = json!(if cells > 0.0 { cells_ok / cells } else { 0.0 });
    }
    eprintln!("{summary}");
    let body: String = out_lines.iter().map(|l| format!("{l}\n")).collect();
    match &args.out {
        Some(p) => write_atomic(p, body.as_bytes())?,
        None => std::io::stdout().write_all(body.as_bytes())?,
    }
    if let Some(p) = &args.summary {
        write_atomic(
            p,
            (serde_json::to_string_pretty(&summary)? + "\n").as_bytes(),
        )?;
    }
    Ok(())
}
