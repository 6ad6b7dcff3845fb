//! Ctrl-C (simulated by setting the cancel flag) stops a running script between calls and
//! leaves the files it wrote intact. Its own test binary: the flag is process-wide.

#[test]
fn cancel_flag_stops_a_long_loop_and_keeps_files_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let engine = workbench_scripting::new_engine();
    let src = format!(
        "save_safetensors({:?}, #{{ w: ones([4, 4]) }});\nlet i = 0;\nloop {{ i += 1; save_safetensors({:?}, #{{ w: full([4, 4], i) }}); }}",
        path.display().to_string(),
        path.display().to_string()
    );
    workbench_core::cancel::reset();
    let t = std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        workbench_core::cancel::request();
    });
    let started = std::time::Instant::now();
    let result = engine.run(&src);
    t.join().unwrap();
    let err = result.expect_err("the loop must be cancelled");
    match *err {
        rhai::EvalAltResult::ErrorTerminated(ref token, _) => {
            assert!(token.to_string().contains("cancelled"), "{token}")
        }
        ref other => panic!("expected termination, got {other}"),
    }
    let shown = workbench_scripting::engine::format_error("loop.rhai", &src, &err);
    assert!(shown.contains("cancelled (Ctrl-C)"), "{shown}");
    assert!(started.elapsed().as_secs() < 30);
    let back = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    assert_eq!(back["w"].dims(), [4, 4]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left behind");
    workbench_core::cancel::reset();
}
