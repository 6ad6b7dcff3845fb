//! `workbench plot` end to end (PNG and SVG from generated run logs, error messages) and run
//! logs from scripts (tests/scripts/runlog.rhai).

use std::path::Path;
use std::process::Command;

fn workbench(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .args(args)
        .env_remove("WORKBENCH_PATH")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Whether the SVG has a `<text>` element reading exactly `t`.
fn has_text(svg: &str, t: &str) -> bool {
    svg.split("<text")
        .skip(1)
        .filter_map(|e| {
            e.split_once('>')
                .and_then(|(_, rest)| rest.split_once("</text>"))
        })
        .any(|(body, _)| body.trim() == t)
}

/// Writes a run log of `n` steps with `loss` and `reward` (and a NaN and a truncated tail).
fn write_log(path: &Path, n: usize, phase: f64) {
    let mut text = String::new();
    for s in 0..n {
        let loss = if s == 3 {
            "null".to_string()
        } else {
            format!(
                "{}",
                (-(s as f64) / 10.0).exp() + 0.05 * (s as f64 + phase).sin()
            )
        };
        text.push_str(&format!(
            "{{\"step\":{s},\"loss\":{loss},\"reward\":{},\"time\":{}}}\n",
            s as f64 / n as f64,
            s as f64 * 0.5
        ));
    }
    text.push_str("{\"step\":999,\"lo");
    std::fs::write(path, text).unwrap();
}

#[test]
fn plots_two_logs_to_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("run_a.jsonl"),
        dir.path().join("run_b.jsonl"),
    );
    write_log(&a, 40, 0.0);
    write_log(&b, 30, 1.0);

    let png = dir.path().join("out/curves.png");
    let (ok, text) = workbench(&[
        os("plot"),
        a.as_os_str(),
        b.as_os_str(),
        os("--metrics"),
        os("reward,loss"),
        os("--out"),
        png.as_os_str(),
        os("--title"),
        os("Two runs"),
        os("--smooth"),
        os("5"),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("truncated"),
        "warns about the cut last line: {text}"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 5_000,
        "suspiciously small PNG: {}",
        bytes.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(png.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

    let svg = dir.path().join("curves.SVG");
    let (ok, text) = workbench(&[
        os("plot"),
        a.as_os_str(),
        b.as_os_str(),
        os("--metrics"),
        os("loss"),
        os("--out"),
        svg.as_os_str(),
    ]);
    assert!(ok, "{text}");
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains("<svg"), "{}", &s[..s.len().min(200)]);
    assert!(
        s.contains("<polyline") || s.contains("<path"),
        "no curve drawn"
    );
    assert!(s.contains("run_a") && s.contains("run_b"), "legend names");
    assert!(has_text(&s, "loss"), "panel caption");

    // Without --metrics every numeric metric but time gets a panel.
    let all = dir.path().join("all.svg");
    let (ok, text) = workbench(&[os("plot"), a.as_os_str(), os("--out"), all.as_os_str()]);
    assert!(ok, "{text}");
    let s = std::fs::read_to_string(&all).unwrap();
    assert!(
        has_text(&s, "loss") && has_text(&s, "reward") && !has_text(&s, "time"),
        "default metrics"
    );
}

#[test]
fn plot_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("run.jsonl");
    write_log(&a, 10, 0.0);

    let out = dir.path().join("x.png");
    let (ok, text) = workbench(&[
        os("plot"),
        a.as_os_str(),
        os("--metrics"),
        os("rewrd"),
        os("--out"),
        out.as_os_str(),
    ]);
    assert!(!ok);
    assert!(
        text.contains("metric 'rewrd' not found in")
            && text.contains("run.jsonl")
            && text.contains("available: loss, reward, time"),
        "{text}"
    );
    assert!(!out.exists());

    let jpg = dir.path().join("x.jpg");
    let (ok, text) = workbench(&[os("plot"), a.as_os_str(), os("--out"), jpg.as_os_str()]);
    assert!(!ok);
    assert!(
        text.contains(".jpg") && text.contains(".png, .svg"),
        "{text}"
    );

    let missing = dir.path().join("missing.jsonl");
    let (ok, text) = workbench(&[
        os("plot"),
        missing.as_os_str(),
        os("--out"),
        out.as_os_str(),
    ]);
    assert!(!ok);
    assert!(text.contains("missing.jsonl"), "{text}");

    // An output path below a regular file cannot be created.
    let blocked = a.join("sub/x.png");
    let (ok, text) = workbench(&[os("plot"), a.as_os_str(), os("--out"), blocked.as_os_str()]);
    assert!(!ok);
    assert!(text.contains("cannot"), "{text}");
}

#[test]
fn run_logs_from_a_script_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/runlog.rhai");
    let (ok, text) = workbench(&[
        os("run"),
        script.as_os_str(),
        os("--"),
        dir.path().as_os_str(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("runlog checks passed"), "{text}");
    // The bar hides itself when stderr is not a terminal: no bar characters in the output.
    assert!(!text.contains("=>"), "{text}");
    let lines = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4, "{lines}");
}
