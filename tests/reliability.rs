//! Issue 15 as a hostile user tries it, through the binary: writes that never destroy, inputs
//! that cannot blow up, errors a person can read, batch-job progress, interrupted generation,
//! the REPL's Ctrl-C under a pseudo-terminal, and plots of NaN and extreme values.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fixture;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_workbench"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn no_panic(o: &Output) {
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// Checks that a command failed cleanly (no panic, exit status 1); returns its stderr.
fn failed(o: &Output) -> String {
    no_panic(o);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

/// A copy of the tiny checkpoint whose config and weights a test may change.
fn tiny_copy(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("llada-tiny").join(f), m.join(f)).unwrap();
    }
    m
}

fn edit_config(model: &Path, key: &str, value: serde_json::Value) {
    let p = model.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(p, cfg.to_string()).unwrap();
}

fn edit_tensor(model: &Path, name: &str, f: impl Fn(candle_core::Tensor) -> candle_core::Tensor) {
    let p = model.join("model.safetensors");
    let mut ts = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    let t = ts.remove(name).unwrap();
    ts.insert(name.to_string(), f(t));
    candle_core::safetensors::save(&ts, &p).unwrap();
}

#[cfg(unix)]
#[test]
fn outputs_write_through_symlinks_and_never_replace_fifos_or_folders() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.md");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("link.md");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = run(&["doc", "--out", link.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&target).unwrap().contains("# "));

    // A FIFO receives the bytes and stays a FIFO.
    use std::os::unix::fs::FileTypeExt;
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let o = run(&["doc", "--out", fifo.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(reader.join().unwrap().contains("# "));
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    // A character device (/dev/null) is written into, not replaced (checked without writing).
    assert_eq!(
        workbench_core::fsio::classify(Path::new("/dev/null")).unwrap(),
        workbench_core::fsio::Target::Stream("/dev/null".into())
    );

    // A folder is refused by name.
    let sub = dir.path().join("folder");
    std::fs::create_dir(&sub).unwrap();
    let o = run(&["doc", "--out", sub.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is a directory"),
        "{}",
        text(&o.stderr)
    );
    assert!(sub.is_dir());
}

#[test]
fn a_pipe_closed_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("loud.rhai");
    std::fs::write(&script, "for i in 0..200000 { print(`line ${i}`); }").unwrap();
    let mut child = bin()
        .args(["run", script.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "line 0\n");
    let o = child.wait_with_output().unwrap();
    let code = o.status.code();
    assert!(matches!(code, Some(0) | Some(141) | None), "{code:?}");
    assert!(text(&o.stderr).trim().is_empty(), "{}", text(&o.stderr));

    // `info` into a pipe whose reader is already gone.
    let mut child = bin()
        .args(["info", fixture("llada-tiny").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
}

#[test]
fn broken_weights_and_configs_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_copy(dir.path());
    let gen = |m: &Path| {
        run(&[
            "generate",
            "--model",
            m.to_str().unwrap(),
            "--prompt",
            "hi",
            "--gen-length",
            "8",
            "--steps",
            "4",
            "--block-length",
            "8",
        ])
    };
    let name = "model.transformer.blocks.1.q_proj.weight";
    edit_tensor(&m, name, |t| {
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[3] = f32::NAN;
        candle_core::Tensor::from_vec(v, t.dims(), t.device()).unwrap()
    });
    let o = gen(&m);
    no_panic(&o);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains(name) && err.contains("NaN"), "{err}");

    let m = tiny_copy(&dir.path().join("int"));
    let name = "model.transformer.ln_f.weight";
    edit_tensor(&m, name, |t| t.to_dtype(candle_core::DType::I64).unwrap());
    let err = text(&gen(&m).stderr);
    assert!(err.contains(name) && err.contains("I64"), "{err}");

    let m = tiny_copy(&dir.path().join("eps"));
    edit_config(&m, "rms_norm_eps", serde_json::json!(-1.0));
    let err = text(&gen(&m).stderr);
    assert!(err.contains("rms_norm_eps"), "{err}");

    // A truncated weights file: the path is said once (candle attaches it too).
    let m = tiny_copy(&dir.path().join("cut"));
    let st = m.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..5000]).unwrap();
    let o = run(&["info", m.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read safetensors file"), "{err}");
    assert_eq!(err.matches("model.safetensors").count(), 1, "{err}");

    let m = tiny_copy(&dir.path().join("layers"));
    edit_config(&m, "n_layers", serde_json::json!(3));
    let o = run(&["info", m.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("`n_layers` = 3"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn an_oversized_prompt_or_generation_fails_before_allocating() {
    let o = run(&[
        "generate",
        "--model",
        fixture("llada-tiny").to_str().unwrap(),
        "--prompt",
        "hi",
        "--gen-length",
        "100000000",
        "--steps",
        "1",
        "--block-length",
        "100000000",
    ]);
    no_panic(&o);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("max_sequence_length 4096"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn out_of_vocabulary_ids_cost_only_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("req.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"ok\", \"prompt_ids\": [5, 6, 7]}\n{\"id\": \"oov\", \"prompt_ids\": [5000]}\n\
         {\"id\": \"max\", \"prompt_ids\": [4294967295]}\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let args = |strict: bool| {
        let mut a = vec![
            "generate".to_string(),
            "--model".into(),
            fixture("llada-tiny").display().to_string(),
            "--in".into(),
            input.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--gen-length".into(),
            "8".into(),
            "--steps".into(),
            "4".into(),
            "--block-length".into(),
            "8".into(),
        ];
        if strict {
            a.push("--strict".into());
        }
        a
    };
    let o = bin().args(args(false)).output().unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("req.jsonl:2: skipped: prompt: token id 5000 at position 0 is outside the vocabulary (0..1000)"),
        "{err}"
    );
    assert!(
        err.contains("req.jsonl:3: skipped: prompt: token id 4294967295 at position 0"),
        "{err}"
    );
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 1);
    assert!(lines.contains("\"ok\""));

    let o = bin().args(args(true)).output().unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("req.jsonl:2"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn invalid_utf8_in_score_input_skips_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut bytes =
        b"{\"answer\": \"#### 18\", \"completion\": \"<answer>18</answer>\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"answer\": \"\xff\xfe\"}\n");
    bytes.extend_from_slice(b"{\"answer\": \"#### 3\", \"completion\": \"<answer>3</answer>\"}\n");
    std::fs::write(&input, bytes).unwrap();
    let out = dir.path().join("out.jsonl");
    let o = run(&[
        "score",
        "--task",
        "gsm8k",
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("in.jsonl:2: skipped: not valid UTF-8"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

#[test]
fn script_errors_have_no_backtrace_and_one_location() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.rhai");
    std::fs::write(&script, "let a = zeros([2, 3]);\nlet b = matmul(a, a);\n").unwrap();
    let o = bin()
        .args(["run", script.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        !err.contains("backtrace") && !err.contains("candle_core::"),
        "{err}"
    );
    assert!(err.contains("bad.rhai:2:"), "{err}");
    assert!(!err.contains("(line 2, position"), "{err}");
}

#[test]
fn an_error_inside_a_function_points_at_the_line_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("nest.rhai");
    std::fs::write(
        &script,
        "fn f(x) {\n    foo(x)\n}\nfn g(x) { f(x) }\nlet c = |x| g(x);\nc.call(1);\n",
    )
    .unwrap();
    let o = run(&["run", script.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    let file = script.display().to_string();
    // The innermost spot first, with its source line and caret, then the calls, innermost first.
    assert!(
        err.contains(&format!(
            "{file}:2:5: Function not found: foo (i64)\n 2 |     foo(x)\n"
        )),
        "{err}"
    );
    let f = err
        .find(&format!("in call to function 'f' at {file}:4:11"))
        .expect(&err);
    let g = err
        .find(&format!("in call to function 'g' at {file}:5:13"))
        .expect(&err);
    assert!(f < g, "{err}");
    assert!(
        err.contains(&format!("in closure call at {file}:6:3")),
        "{err}"
    );
    assert!(!err.contains(" @ '") && !err.contains("(line "), "{err}");

    // An error raised inside an imported module's function names that module's file.
    std::fs::write(
        dir.path().join("helper.rhai"),
        "fn boom() {\n  throw \"kaput\";\n}\n",
    )
    .unwrap();
    std::fs::write(&script, "import \"helper\" as h;\nh::boom();\n").unwrap();
    let o = run(&["run", script.to_str().unwrap()]);
    let err = text(&o.stderr);
    let helper = dir.path().join("helper.rhai").display().to_string();
    assert!(
        err.contains(&format!("{helper}:2:3: Runtime error: kaput")),
        "{err}"
    );
    assert!(
        err.contains(&format!("in call to function 'boom' at {file}:2:")),
        "{err}"
    );
}

#[test]
fn rhai_bindings_refuse_out_of_vocabulary_ids_by_row_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ids.rhai");
    std::fs::write(
        &script,
        format!(
            "let m = load_model({:?});\n\
             let o = #{{gen_length: 8, steps: 4, block_length: 8}};\n\
             try {{ forward(m, [[5, 6, 7], [5, 6, 5000]]); }} catch (e) {{ print(`forward: ${{e}}`); }}\n\
             try {{ forward(m, [[5, 6, 4294967295]]); }} catch (e) {{ print(`forward max: ${{e}}`); }}\n\
             try {{ forward(m, [[5, -1]]); }} catch (e) {{ print(`forward neg: ${{e}}`); }}\n\
             try {{ generate(m, [[5, 6, 4294967295]], o); }} catch (e) {{ print(`generate: ${{e}}`); }}\n\
             try {{ generate(m, [[5], [6, 5000]], o); }} catch (e) {{ print(`generate 2: ${{e}}`); }}\n\
             print(`ok ${{generate(m, [[5, 6, 7]], o).completion_ids.shape}}`);\n",
            fixture("llada-tiny").display().to_string()
        ),
    )
    .unwrap();
    let o = run(&["run", script.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}{out}", text(&o.stderr));
    for want in [
        "forward: row 1: token id 5000 at position 2 is outside the vocabulary (0..1000)",
        "forward max: row 0: token id 4294967295 at position 2 is outside the vocabulary (0..1000)",
        "forward neg: row 0: token id -1 at position 1 is outside the vocabulary (0..1000)",
        "generate: generate: prompt 0: token id 4294967295 at position 2 is outside the vocabulary (0..1000)",
        "generate 2: generate: prompt 1: token id 5000 at position 1 is outside the vocabulary (0..1000)",
        "ok [1, 8]",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
}

#[test]
fn exit_sets_the_status_and_set_values_are_never_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("exit.rhai");
    std::fs::write(
        &script,
        "print(\"bye\");\nexit(3);\nprint(\"not reached\");\n",
    )
    .unwrap();
    let o = run(&["run", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "bye\n");
    // A status outside 0..=255, or not an integer, is an error naming it (status 1), never a
    // silent 0 (or a clamped 255).
    for (arg, shown) in [
        ("-1", "exit(-1)"),
        ("300", "exit(300)"),
        ("\"x\"", "exit(\"x\")"),
        ("2.5", "exit(2.5)"),
    ] {
        std::fs::write(&script, format!("exit({arg});\nprint(\"not reached\");\n")).unwrap();
        let o = run(&["run", script.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "exit({arg}): {err}");
        assert!(
            err.contains(shown) && err.contains("0..=255") && err.contains("exit.rhai:1:"),
            "{err}"
        );
        assert!(text(&o.stdout).is_empty());
    }
    std::fs::write(&script, "exit(0);\nprint(\"not reached\");\n").unwrap();
    let o = run(&["run", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).is_empty());

    let script = dir.path().join("cfg.rhai");
    std::fs::write(
        &script,
        "let c = config(#{x: 0, v: [], m: #{}});\nprint(`${c.x} ${c.v} ${c.m.a}`);\n",
    )
    .unwrap();
    let o = run(&["run", script.to_str().unwrap(), "--set", "x=1+2"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not a valid literal"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&[
        "run",
        script.to_str().unwrap(),
        "--set",
        "x=7",
        "--set",
        "v=[1, 2.5, \"s\"]",
        "--set",
        "m=#{a: true}",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "7 [1, 2.5, \"s\"] true\n");
}

#[test]
fn without_a_terminal_progress_is_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("train.rhai");
    let log = dir.path().join("log.jsonl");
    std::fs::write(
        &script,
        format!(
            "let l = run_log({:?}, #{{total: 3, show: [\"loss\"]}});\n\
             for s in 1..=3 {{ l.log(#{{step: s, loss: 1.0 / s}}); }}\n",
            log.display().to_string()
        ),
    )
    .unwrap();
    let o = bin()
        .args(["run", script.to_str().unwrap()])
        .env("WORKBENCH_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    for s in 1..=3 {
        assert!(err.contains(&format!("step {s}/3")), "{err}");
    }
    assert!(err.contains("loss 0.5000") && err.contains("eta"), "{err}");
}

/// Runs `generate` over 400 requests into `out.jsonl`, sends `signal` (`INT`, `TERM`) once
/// results are on disk, and checks that the finished ones were kept and counted.
#[cfg(unix)]
fn interrupted_generate_keeps_its_finished_results_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("req.jsonl");
    let body: String = (0..400)
        .map(|i| format!("{{\"id\": {i}, \"prompt_ids\": [5, 6, 7]}}\n"))
        .collect();
    std::fs::write(&input, body).unwrap();
    let out = dir.path().join("out.jsonl");
    let child = bin()
        .args([
            "generate",
            "--model",
            fixture("llada-tiny").to_str().unwrap(),
            "--in",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch-size",
            "1",
            "--gen-length",
            "64",
            "--steps",
            "64",
            "--block-length",
            "64",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some results are on disk (the temp sibling grows as batches finish).
    let start = Instant::now();
    loop {
        let partial: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        if partial > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no partial results appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(!o.status.success());
    let kept = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!((1..400).contains(&kept), "{kept}");
    assert!(
        err.contains(&format!("stopped after {kept} of 400 generations")),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let cause = if signal == "TERM" {
        "SIGTERM"
    } else {
        "Ctrl-C"
    };
    assert!(err.contains(&format!("cancelled ({cause})")), "{err}");
}

#[cfg(unix)]
#[test]
fn interrupted_generate_keeps_its_finished_results() {
    interrupted_generate_keeps_its_finished_results_on("INT");
}

/// Slurm's time limit and `scancel` send SIGTERM: handled like Ctrl-C.
#[cfg(unix)]
#[test]
fn sigterm_on_generate_keeps_its_finished_results() {
    interrupted_generate_keeps_its_finished_results_on("TERM");
}

/// A run killed outright leaves `.out.jsonl.PID.partial`; the next run writing the file says
/// so, keeps it while it works and removes it when its own results replace the file. The
/// partial of a live process is never touched.
#[cfg(unix)]
#[test]
fn partial_results_of_a_killed_run_are_reported_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("req.jsonl");
    std::fs::write(&input, "{\"id\": 0, \"prompt_ids\": [5, 6, 7]}\n").unwrap();
    let out = dir.path().join("out.jsonl");
    // A pid that is gone: a child that has exited and been reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = dir.path().join(format!(".out.jsonl.{dead}.partial"));
    std::fs::write(&stale, "{\"id\": 7}\n{\"id\": 8}\n").unwrap();
    let live = dir
        .path()
        .join(format!(".out.jsonl.{}.partial", std::process::id()));
    std::fs::write(&live, "{\"id\": 9}\n").unwrap();
    let o = run(&[
        "generate",
        "--model",
        fixture("llada-tiny").to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--gen-length",
        "8",
        "--steps",
        "4",
        "--block-length",
        "8",
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            ".out.jsonl.{dead}.partial holds 2 result line(s) of an interrupted run (process \
             {dead} is gone)"
        )),
        "{err}"
    );
    assert!(!stale.exists(), "the stale partial was not removed");
    assert!(live.exists(), "a live process's partial was removed");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);
}

#[cfg(unix)]
#[test]
fn repl_ctrl_c_stops_the_entry_and_keeps_the_session_in_a_pty() {
    let has_python = Command::new("python3")
        .args(["-c", "import pty"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_python,
        "this test drives the REPL through python3's pty module"
    );
    let dir = tempfile::tempdir().unwrap();
    let driver = r#"
import os, pty, select, sys, time
bin = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.execv(bin, [bin, "repl"])
def until(pat, secs):
    buf, end = b"", time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            buf += data
            if pat in buf:
                break
    return buf
out = until(b"wb> ", 30)
os.write(fd, b"let i = 0; loop { i += 1; }\r")
time.sleep(1.0)
os.write(fd, b"\x03")
out += until(b"wb> ", 15)
os.write(fd, b'print("after-" + "ctrl-c");\r')
out += until(b"after-ctrl-c", 15)
os.kill(pid, 9)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(0 if b"after-ctrl-c" in out else 1)
"#;
    let o = Command::new("python3")
        .args(["-c", driver, env!("CARGO_BIN_EXE_workbench")])
        .env("XDG_STATE_HOME", dir.path())
        .output()
        .unwrap();
    let shown = text(&o.stdout);
    assert!(
        o.status.success(),
        "the REPL did not survive Ctrl-C:\n{shown}"
    );
    assert!(shown.contains("terminated"), "{shown}");
}

#[test]
fn plots_leave_gaps_at_nan_survive_extremes_and_refuse_text_steps() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.jsonl");
    std::fs::write(
        &log,
        "{\"step\": 1, \"loss\": 1.0}\n{\"step\": 2, \"loss\": null}\n{\"step\": 3, \"loss\": 2.0}\n\
         {\"step\": 4, \"loss\": 1.7e308}\n{\"step\": 5, \"loss\": -1.7e308}\n\
         {\"step\": 6, \"loss\": 1.8e308}\n{\"step\": 7, \"loss\": NaN}\n\
         {\"step\": 8, \"loss\": Infinity}\n{\"step\": 9, \"loss\": -Infinity}\n\
         {\"step\": 10, \"loss\": 3.0}\n",
    )
    .unwrap();
    let png = dir.path().join("a.png");
    let mut child = bin()
        .args([
            "plot",
            log.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("plot hangs on extreme values");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    // null, 1.8e308 (beyond f64), NaN, Infinity and -Infinity: five gaps, no line refused.
    assert!(
        err.contains("5 null/non-finite value(s), drawn as gaps"),
        "{err}"
    );
    assert!(
        !err.contains("malformed") && !err.contains("skipped"),
        "{err}"
    );
    assert!(png.is_file());

    std::fs::write(&log, "{\"step\": \"one\", \"loss\": 1.0}\n").unwrap();
    let o = run(&[
        "plot",
        log.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("non-numeric `step`"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn eval_with_a_hub_repo_id_hashes_the_resolved_folder() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("hub/models--acme--tiny");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("llada-tiny").join(f), snap.join(f)).unwrap();
    }
    let out = dir.path().join("ev");
    let o = bin()
        .env("HF_HUB_CACHE", dir.path().join("hub"))
        .args([
            "run",
            "scripts/eval.rhai",
            "--set",
            "model=acme/tiny",
            "--set",
            "task=sudoku",
            "--set",
            "limit=2",
            "--set",
            "gen_lengths=[32]",
            "--set",
            &format!("out={:?}", out.display().to_string()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(rec["model"], "acme/tiny");
    assert!(
        rec["model_dir"].as_str().unwrap().ends_with("abc123"),
        "{rec}"
    );
    assert_eq!(rec["model_config_hash"].as_str().unwrap().len(), 16);
    assert_eq!(rec["results"].as_array().unwrap().len(), 1);
}

fn generate_args(model: &Path) -> Vec<String> {
    [
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--gen-length",
        "8",
        "--steps",
        "4",
        "--block-length",
        "8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(unix)]
#[test]
fn generate_writes_through_a_symlink_and_into_devices() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.jsonl");
    std::fs::write(&target, "old\n").unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let gen = |out: &Path| {
        let mut a = generate_args(&fixture("llada-tiny"));
        a.extend(["--prompt".into(), "hi".into(), "--out".into()]);
        a.push(out.display().to_string());
        bin().args(a).output().unwrap()
    };
    let o = gen(&link);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let got = std::fs::read_to_string(&target).unwrap();
    assert_eq!(got.lines().count(), 1, "{got}");
    assert!(got.contains("\"output_ids\""), "{got}");

    // /dev/null takes the lines and stays a character device.
    let o = gen(Path::new("/dev/null"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    // /dev/full: a clean write error, the device untouched.
    if Path::new("/dev/full").exists() {
        let o = gen(Path::new("/dev/full"));
        let err = failed(&o);
        assert!(
            err.contains("stopped after 0 of 1 generations")
                && err.contains("cannot write /dev/full"),
            "{err}"
        );
        assert!(std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

#[test]
fn a_huge_config_size_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_copy(dir.path());
    edit_config(&m, "n_layers", serde_json::json!(1_000_000_000_000u64));
    let start = Instant::now();
    for args in [vec!["info".to_string(), m.display().to_string()], {
        let mut a = generate_args(&m);
        a.extend(["--prompt".into(), "hi".into()]);
        a
    }] {
        let o = bin().args(&args).output().unwrap();
        let err = failed(&o);
        assert!(
            err.contains("`n_layers` = 1000000000000 is larger than the sane limit 4096"),
            "{err}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_prompt_longer_than_the_model_allows_costs_only_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_copy(dir.path());
    edit_config(&m, "max_sequence_length", serde_json::json!(32));
    let long: Vec<String> = (0..30).map(|i| (5 + i % 50).to_string()).collect();
    let input = dir.path().join("req.jsonl");
    std::fs::write(
        &input,
        format!(
            "{{\"id\": \"long\", \"prompt_ids\": [{}]}}\n{{\"id\": \"ok\", \"prompt_ids\": [5, 6]}}\n",
            long.join(", ")
        ),
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let mut a = generate_args(&m);
    a.extend([
        "--in".into(),
        input.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    let o = bin().args(&a).output().unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "req.jsonl:1: skipped: prompt (30 tokens) + gen_length (8) = 38 exceeds the model's \
             max_sequence_length 32"
        ),
        "{err}"
    );
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 1);
    assert!(lines.contains("\"ok\""));

    // The same prompt given with --prompt fails the command, naming it.
    let text_prompt = "word ".repeat(60);
    let mut a = generate_args(&m);
    a.extend(["--prompt".into(), text_prompt]);
    let o = bin().args(&a).output().unwrap();
    let err = failed(&o);
    assert!(
        err.contains("--prompt") && err.contains("exceeds the model's max_sequence_length 32"),
        "{err}"
    );
}

#[test]
fn logits_that_overflow_stop_the_sampler_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_copy(dir.path());
    // Finite weights (the load check passes) whose products overflow f32.
    edit_tensor(&m, "model.transformer.ff_out.weight", |t| {
        t.ones_like().unwrap().affine(3e38, 0.0).unwrap()
    });
    let mut a = generate_args(&m);
    a.extend(["--prompt".into(), "hi".into()]);
    let o = bin().args(&a).output().unwrap();
    let err = failed(&o);
    assert!(
        err.contains("step 1: the model produced") && err.contains("non-finite logit(s)"),
        "{err}"
    );
}

#[test]
fn generate_without_a_terminal_prints_plain_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("req.jsonl");
    let body: String = (0..4)
        .map(|i| format!("{{\"id\": {i}, \"prompt_ids\": [5, 6, 7]}}\n"))
        .collect();
    std::fs::write(&input, body).unwrap();
    let mut a = generate_args(&fixture("llada-tiny"));
    a.extend([
        "--in".into(),
        input.display().to_string(),
        "--out".into(),
        dir.path().join("out.jsonl").display().to_string(),
        "--batch-size".into(),
        "2".into(),
    ]);
    let o = bin()
        .args(&a)
        .env("WORKBENCH_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    for done in ["generate 2/4", "generate 4/4"] {
        let line = err
            .lines()
            .find(|l| l.starts_with(done))
            .unwrap_or_else(|| panic!("no `{done}` line in:\n{err}"));
        assert!(line.contains("/s") && line.contains("elapsed"), "{line}");
    }
    // Plain lines only: no carriage returns or escape codes of a progress bar.
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}
