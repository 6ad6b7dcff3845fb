//! JSONL run logs: round trips, non-finite values, resume truncation and damaged files.

use serde_json::{json, Value};
use workbench_core::train::runlog::{
    metric, metric_names, moving_average, read_log, record_step, series, Record, RunLog,
};

fn rec(v: Value) -> Record {
    v.as_object().unwrap().clone()
}

#[test]
fn records_round_trip_with_added_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/run.jsonl");
    let mut log = RunLog::create(&path).unwrap();
    for step in 0..5i64 {
        log.log(rec(
            json!({"step": step, "loss": 1.0 / (step + 1) as f64, "tag": "a", "ok": true}),
        ))
        .unwrap();
    }
    log.log(rec(json!({"step": 5, "time": 123.5}))).unwrap();
    assert_eq!(log.last_step(), Some(5));
    let got = read_log(&path).unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(got.records.len(), 6);
    for (i, r) in got.records.iter().take(5).enumerate() {
        assert_eq!(record_step(r), Some(i as i64));
        assert_eq!(r["loss"].as_f64().unwrap(), 1.0 / (i + 1) as f64);
        assert_eq!(r["tag"], "a");
        let t = r["time"].as_f64().unwrap();
        assert!((0.0..60.0).contains(&t), "{t}");
    }
    assert_eq!(
        got.records[5]["time"].as_f64(),
        Some(123.5),
        "given time kept"
    );
    // One object per line.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 6);
    assert!(text.ends_with('\n'));
    assert_eq!(
        series(&got.records, "loss"),
        (0..5)
            .map(|i| (i as f64, 1.0 / (i + 1) as f64))
            .collect::<Vec<_>>()
    );
    assert_eq!(metric_names(&got.records), vec!["loss", "ok", "time"]);
}

#[test]
fn record_without_integer_step_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::create(dir.path().join("run.jsonl")).unwrap();
    let e = log.log(rec(json!({"loss": 1.0}))).unwrap_err();
    assert!(format!("{e:#}").contains("step"), "{e:#}");
    let e = log.log(rec(json!({"step": 1.5}))).unwrap_err();
    assert!(format!("{e:#}").contains("integer `step`"), "{e:#}");
}

#[test]
fn nan_and_infinity_are_written_as_null_and_skipped_by_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut log = RunLog::create(&path).unwrap();
    log.log_scalars(0, &[("loss", f64::NAN), ("kl", f64::INFINITY)])
        .unwrap();
    log.log_scalars(1, &[("loss", 0.5), ("kl", f64::NEG_INFINITY)])
        .unwrap();
    assert_eq!(metric(f64::NAN), Value::Null);
    assert_eq!(metric(2.0), json!(2.0));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"loss\":null"), "{text}");
    assert!(text.contains("\"kl\":null"), "{text}");
    let got = read_log(&path).unwrap();
    assert_eq!(series(&got.records, "loss"), vec![(1.0, 0.5)]);
    assert!(series(&got.records, "kl").is_empty());
}

#[test]
fn resume_keeps_steps_up_to_k_and_times_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut log = RunLog::create(&path).unwrap();
    for step in 0..10i64 {
        // Explicit times so the test does not depend on the clock.
        log.log(rec(
            json!({"step": step, "loss": step, "time": 10.0 * step as f64}),
        ))
        .unwrap();
    }
    drop(log);
    let mut log = RunLog::resume(&path, 4).unwrap();
    assert_eq!(log.last_step(), Some(4));
    assert!(log.elapsed() >= 40.0, "carries the last kept time");
    for step in 5..8i64 {
        log.log(rec(json!({"step": step, "loss": step}))).unwrap();
    }
    let got = read_log(&path).unwrap();
    let steps: Vec<i64> = got.records.iter().filter_map(record_step).collect();
    assert_eq!(steps, (0..8).collect::<Vec<_>>(), "no duplicated steps");
    let times: Vec<f64> = got
        .records
        .iter()
        .map(|r| r["time"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times[5] >= 40.0 && times[5] < 100.0, "{times:?}");
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn resume_of_a_missing_file_starts_a_new_log_and_drops_a_truncated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.jsonl");
    let mut log = RunLog::resume(&fresh, 100).unwrap();
    assert_eq!(log.last_step(), None);
    log.log_scalars(0, &[("loss", 1.0)]).unwrap();
    assert_eq!(read_log(&fresh).unwrap().records.len(), 1);

    let path = dir.path().join("crashed.jsonl");
    std::fs::write(
        &path,
        "{\"step\":0,\"time\":1.0}\n{\"step\":1,\"time\":2.0}\n{\"step\":2,\"ti",
    )
    .unwrap();
    let mut log = RunLog::resume(&path, 5).unwrap();
    assert_eq!(log.last_step(), Some(1));
    log.log_scalars(2, &[("loss", 3.0)]).unwrap();
    let got = read_log(&path).unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(got.records.len(), 3);
}

#[test]
fn malformed_middle_line_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        "{\"step\":0,\"loss\":1}\n\n{\"step\":1,\"loss\":oops}\n{\"step\":2,\"loss\":3}\n",
    )
    .unwrap();
    let e = format!("{:#}", read_log(&path).unwrap_err());
    assert!(e.contains("bad.jsonl:3"), "{e}");
    let e = format!("{:#}", RunLog::resume(&path, 10).unwrap_err());
    assert!(e.contains("bad.jsonl:3"), "{e}");

    std::fs::write(&path, "{\"step\":0}\n[1, 2]\n{\"step\":2}\n").unwrap();
    let e = format!("{:#}", read_log(&path).unwrap_err());
    assert!(
        e.contains("bad.jsonl:2") && e.contains("JSON object"),
        "{e}"
    );
}

#[test]
fn python_non_finite_tokens_and_out_of_range_numbers_read_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    std::fs::write(
        &path,
        "{\"step\":1,\"loss\":1.8e308,\"kl\":-1e999}\n\
         {\"step\":2,\"loss\":NaN,\"kl\":Infinity,\"note\":\"NaN 1e999 \\\" -Infinity\"}\n\
         {\"step\":3,\"loss\":-Infinity,\"kl\":0.5}\n\
         {\"step\":4,\"loss\":2}\n",
    )
    .unwrap();
    let got = read_log(&path).unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(got.records.len(), 4);
    for r in &got.records[..3] {
        assert_eq!(r["loss"], Value::Null, "{r:?}");
    }
    assert_eq!(got.records[0]["kl"], Value::Null);
    assert_eq!(got.records[1]["kl"], Value::Null);
    // Inside a string the same characters are text, kept as they are.
    assert_eq!(got.records[1]["note"], "NaN 1e999 \" -Infinity");
    assert_eq!(series(&got.records, "loss"), vec![(4.0, 2.0)]);
    assert_eq!(series(&got.records, "kl"), vec![(3.0, 0.5)]);

    // Steps stay strict: a NaN step is still a line without a numeric step.
    std::fs::write(&path, "{\"step\":NaN,\"loss\":1}\n").unwrap();
    let got = read_log(&path).unwrap();
    let e = workbench_core::train::runlog::segments(&got.records, "loss").unwrap_err();
    assert!(e.to_string().contains("non-numeric `step` (null)"), "{e}");
    // A line broken in other ways is still refused.
    std::fs::write(&path, "{\"step\":1,\"loss\":NaN,}\n{\"step\":2}\n").unwrap();
    let e = format!("{:#}", read_log(&path).unwrap_err());
    assert!(e.contains("run.jsonl:1: malformed run log line"), "{e}");
}

#[test]
fn truncated_last_line_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    std::fs::write(
        &path,
        "{\"step\":0,\"loss\":1}\n{\"step\":1,\"loss\":2}\n{\"step\":2,\"lo",
    )
    .unwrap();
    let got = read_log(&path).unwrap();
    assert_eq!(got.records.len(), 2);
    assert_eq!(got.warnings.len(), 1);
    assert!(
        got.warnings[0].contains("run.jsonl:3"),
        "{:?}",
        got.warnings
    );
}

#[test]
fn missing_file_error_names_it() {
    let e = format!("{:#}", read_log("/nonexistent/dir/run.jsonl").unwrap_err());
    assert!(e.contains("/nonexistent/dir/run.jsonl"), "{e}");
}

#[test]
fn moving_average_is_trailing() {
    let pts = vec![(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)];
    assert_eq!(moving_average(&pts, 1), pts);
    assert_eq!(
        moving_average(&pts, 2),
        vec![(0.0, 1.0), (1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]
    );
}

#[test]
fn progress_message_shows_named_metrics_and_their_prefixed_keys() {
    use workbench_core::train::runlog::progress_message;
    let r = rec(
        json!({"step": 3, "loss": 0.12345, "reward_mean": 0.5, "reward_max": 1.0,
                       "acc": null, "tag": "sft", "n": 7}),
    );
    let show: Vec<String> = ["loss", "reward", "acc", "tag", "n", "absent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        progress_message(&show, &r),
        "loss 0.1235  reward_max 1.000  reward_mean 0.5000  acc nan  tag sft  n 7"
    );
}
