//! Data loading (JSONL / CSV with errors naming file, line and field), the shipped test sets,
//! seeded resumable batching, and the Sudoku / Countdown generators.

use std::io::Write;

use workbench_core::data::{
    load_csv, load_file, load_jsonl, require_fields, BatchOptions, Cursor, DataError, Dataset,
};
use workbench_core::tasks::{countdown, sudoku, task_by_name, PromptStyle};

fn data_path(name: &str) -> String {
    format!("{}/../data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp_file(name: &str, content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    (dir, path)
}

#[test]
fn shipped_test_sets_load_and_fit_their_tasks() {
    let sets = [
        ("gsm8k_test.jsonl", 1319, "gsm8k"),
        ("math500_test.jsonl", 500, "math500"),
        ("amc23_test.jsonl", 40, "amc"),
        ("aime24_test.jsonl", 30, "aime"),
        ("countdown_cd3_test.jsonl", 256, "countdown"),
        ("sudoku_4x4_test.csv", 500, "sudoku"),
    ];
    for (file, rows, task_name) in sets {
        let ds = load_file(data_path(file)).unwrap();
        assert_eq!(ds.len(), rows, "{file}");
        let task = task_by_name(task_name).unwrap();
        for ex in ds.iter() {
            task.reference(ex).unwrap();
            let p = task.prompt(ex, PromptStyle::D1Eval).unwrap();
            assert_eq!(p.assistant_prefill, "<reasoning>");
            task.prompt(ex, PromptStyle::D1Train).unwrap();
        }
    }
    // GSM8K evaluation reference value and d1 training answer agree
    let gsm = load_jsonl(data_path("gsm8k_test.jsonl")).unwrap();
    let task = task_by_name("gsm8k").unwrap();
    let first = gsm.get(0).unwrap();
    assert_eq!(task.reference(first).unwrap(), "18");
    assert!(task.evaluate(first, r"\boxed{18}").unwrap().correct);
}

#[test]
fn shipped_sudoku_solutions_are_valid_and_consistent() {
    // Note: 124 of d1's 500 test puzzles have more than one solution; the reward compares with
    // the listed one, so an equally valid alternative gets only partial credit.
    let ds = load_csv(data_path("sudoku_4x4_test.csv")).unwrap();
    let mut multiple = 0;
    for ex in ds.iter() {
        let p = ex.text("Puzzle").unwrap();
        let s = ex.text("Solution").unwrap();
        let grid = sudoku::solver::parse_grid(&p).unwrap();
        let sol = sudoku::solver::parse_grid(&s).unwrap();
        assert!(
            sudoku::solver::is_valid_solution(&sol),
            "line {}",
            ex.origin.line
        );
        assert!(
            grid.iter().zip(&sol).all(|(&g, &v)| g == 0 || g == v),
            "line {}",
            ex.origin.line
        );
        match sudoku::count_solutions(&grid, 2) {
            1 => assert_eq!(sudoku::solve(&grid).unwrap(), sol),
            n => {
                assert_eq!(n, 2);
                multiple += 1;
            }
        }
    }
    assert_eq!(multiple, 124);
}

#[test]
fn jsonl_errors_name_file_and_line() {
    let (_d, path) = temp_file("x.jsonl", "{\"a\": 1}\n\n{\"a\": 2\n");
    let err = load_jsonl(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Parse { line: 3, .. }), "{msg}");
    assert!(msg.contains("x.jsonl:3"), "{msg}");

    let (_d, path) = temp_file("y.jsonl", "{\"a\": 1}\n[1, 2]\n");
    let msg = load_jsonl(&path).unwrap_err().to_string();
    assert!(
        msg.contains("y.jsonl:2") && msg.contains("JSON object"),
        "{msg}"
    );

    let (_d, path) = temp_file(
        "z.jsonl",
        "{\"question\": \"q\", \"answer\": \"1\"}\n{\"question\": \"q\"}\n",
    );
    let ds = load_jsonl(&path).unwrap();
    let err = require_fields(&ds, &["question", "answer"]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DataError::MissingField { line: 2, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("z.jsonl:2") && msg.contains("`answer`"),
        "{msg}"
    );

    let missing = load_jsonl("/nonexistent/file.jsonl")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/file.jsonl"), "{missing}");
    assert!(matches!(
        load_file("data.txt"),
        Err(DataError::UnsupportedFormat { .. })
    ));
}

#[test]
fn csv_quoting_and_errors() {
    let text = "Puzzle,Note\r\n0001,\"a, b\"\r\n0002,\"say \"\"hi\"\"\"\r\n0003,\"two\nlines\"\r\n\r\n0004,plain\r\n";
    let (_d, path) = temp_file("q.csv", text);
    let ds = load_csv(&path).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.get(0).unwrap().text("Note").unwrap(), "a, b");
    assert_eq!(ds.get(1).unwrap().text("Note").unwrap(), "say \"hi\"");
    assert_eq!(ds.get(2).unwrap().text("Note").unwrap(), "two\nlines");
    assert_eq!(
        ds.get(3).unwrap().origin.line,
        7,
        "line numbers count the embedded newline"
    );
    // leading zeros stay (values are strings)
    assert_eq!(ds.get(0).unwrap().text("Puzzle").unwrap(), "0001");

    let (_d, path) = temp_file("bad.csv", "a,b\n1,2\n3\n");
    let msg = load_csv(&path).unwrap_err().to_string();
    assert!(
        msg.contains("bad.csv:3") && msg.contains("expected 2 columns"),
        "{msg}"
    );
    let (_d, path) = temp_file("open.csv", "a,b\n1,\"2\n");
    let msg = load_csv(&path).unwrap_err().to_string();
    assert!(
        msg.contains("open.csv:2") && msg.contains("unterminated"),
        "{msg}"
    );
    let (_d, path) = temp_file("dup.csv", "a,a\n1,2\n");
    assert!(load_csv(&path)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
}

fn numbered(n: usize) -> Dataset {
    let rows = (0..n).map(|i| serde_json::json!({ "i": i })).collect();
    Dataset::from_values("numbers", rows).unwrap()
}

fn ids(b: &workbench_core::data::Batch<'_>) -> Vec<u64> {
    b.examples
        .iter()
        .map(|e| e.fields["i"].as_u64().unwrap())
        .collect()
}

#[test]
fn seeded_shuffle_is_deterministic_and_a_permutation() {
    let ds = numbered(50);
    let a = ds.epoch_order(7, 0, true);
    assert_eq!(a, ds.epoch_order(7, 0, true));
    assert_ne!(a, ds.epoch_order(8, 0, true), "different seed");
    assert_ne!(a, ds.epoch_order(7, 1, true), "different epoch");
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(ds.epoch_order(7, 0, false), (0..50).collect::<Vec<_>>());
    let shuffled = ds.shuffled(7);
    assert_eq!(
        shuffled.get(0).unwrap().fields["i"].as_u64().unwrap() as usize,
        a[0]
    );
}

#[test]
fn batches_cover_each_epoch_once_and_resume_exactly() {
    let ds = numbered(10);
    let opts = BatchOptions::new(4);
    let mut b = ds.batcher(opts, Cursor::new(3)).unwrap();
    let mut epoch0 = Vec::new();
    for _ in 0..3 {
        let batch = b.next_batch().unwrap();
        assert_eq!(batch.start.epoch, 0);
        epoch0.extend(ids(&batch));
    }
    // 4 + 4 + 2 (short last batch kept)
    epoch0.sort();
    assert_eq!(epoch0, (0..10).collect::<Vec<u64>>());
    assert_eq!(
        b.cursor(),
        Cursor {
            epoch: 1,
            position: 0,
            seed: 3
        }
    );

    // save the cursor mid-epoch, keep going, then resume from the saved JSON
    let _ = b.next_batch().unwrap();
    let saved = serde_json::to_string(&b.cursor()).unwrap();
    let expected: Vec<Vec<u64>> = (0..5).map(|_| ids(&b.next_batch().unwrap())).collect();
    let cursor: Cursor = serde_json::from_str(&saved).unwrap();
    assert_eq!(
        cursor,
        Cursor {
            epoch: 1,
            position: 4,
            seed: 3
        }
    );
    let mut resumed = ds.batcher(opts, cursor).unwrap();
    let got: Vec<Vec<u64>> = (0..5)
        .map(|_| ids(&resumed.next_batch().unwrap()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn batch_options() {
    let ds = numbered(10);
    let opts = BatchOptions {
        batch_size: 4,
        shuffle: false,
        drop_last: true,
        max_epochs: Some(2),
    };
    let batches: Vec<Vec<u64>> = ds
        .batcher(opts, Cursor::new(0))
        .unwrap()
        .map(|b| ids(&b))
        .collect();
    assert_eq!(
        batches,
        vec![
            vec![0, 1, 2, 3],
            vec![4, 5, 6, 7],
            vec![0, 1, 2, 3],
            vec![4, 5, 6, 7]
        ]
    );
    assert!(ds.batcher(BatchOptions::new(0), Cursor::new(0)).is_err());
    assert!(ds
        .batcher(
            BatchOptions::new(2),
            Cursor {
                epoch: 0,
                position: 11,
                seed: 0
            }
        )
        .is_err());
    let too_big = BatchOptions {
        batch_size: 20,
        shuffle: true,
        drop_last: true,
        max_epochs: None,
    };
    assert!(ds
        .batcher(too_big, Cursor::new(0))
        .unwrap()
        .next_batch()
        .is_none());
    assert!(Dataset::default()
        .batcher(BatchOptions::new(2), Cursor::new(0))
        .unwrap()
        .next_batch()
        .is_none());
}

#[test]
fn filter_take_split() {
    let ds = numbered(10).filter(|e| e.fields["i"].as_u64().unwrap() % 2 == 0);
    assert_eq!(ds.len(), 5);
    let (head, tail) = ds.split_last(2);
    assert_eq!((head.len(), tail.len()), (3, 2));
    assert_eq!(tail.get(0).unwrap().fields["i"], 6);
    assert_eq!(numbered(10).take(3).len(), 3);
}

#[test]
fn sudoku_generator() {
    let a = sudoku::generate(11, 20, 10).unwrap();
    assert_eq!(a, sudoku::generate(11, 20, 10).unwrap(), "seeded");
    assert_ne!(a, sudoku::generate(12, 20, 10).unwrap());
    let task = task_by_name("sudoku").unwrap();
    for (i, p) in a.iter().enumerate() {
        assert_eq!(p.puzzle.chars().filter(|&c| c == '0').count(), 10);
        let g = sudoku::solver::parse_grid(&p.puzzle).unwrap();
        assert_eq!(sudoku::count_solutions(&g, 2), 1);
        assert_eq!(
            sudoku::solver::grid_string(&sudoku::solve(&g).unwrap()),
            p.solution
        );
        let ex = p.to_example(i);
        let r = task
            .reward(&ex, &format!("<answer>\n{}\n</answer>", p.solution))
            .unwrap();
        assert!(r.correct && r.total == 1.0);
    }
    assert!(
        sudoku::generate(0, 1, 13).is_err(),
        "more than 12 blanks cannot be unique"
    );
    assert_eq!(sudoku::generate(0, 3, 12).unwrap().len(), 3);
}

#[test]
fn countdown_generator() {
    let opts = countdown::CountdownOptions::default();
    let a = countdown::generate(5, 50, &opts).unwrap();
    assert_eq!(a, countdown::generate(5, 50, &opts).unwrap(), "seeded");
    let task = task_by_name("countdown").unwrap();
    for (i, p) in a.iter().enumerate() {
        assert_eq!(p.numbers.len(), 3);
        assert!(p.numbers.iter().all(|&n| (1..=100).contains(&n)));
        assert!((1..=100).contains(&p.target));
        assert!(countdown::uses_exactly(&p.expression, &p.numbers), "{p:?}");
        let ex = p.to_example(i);
        // same schema as data/countdown_cd3_test.jsonl
        assert!(ex.get("input").unwrap().is_string() && ex.get("output").unwrap().is_string());
        let r = task
            .reward(&ex, &format!("<answer>\n{}\n</answer>", p.expression))
            .unwrap();
        assert!(r.correct && r.total == 1.0, "{p:?}");
    }
    let four = countdown::CountdownOptions { count: 4, ..opts };
    assert!(countdown::generate(1, 10, &four)
        .unwrap()
        .iter()
        .all(|p| p.numbers.len() == 4));
    let bad = countdown::CountdownOptions { count: 1, ..opts };
    assert!(countdown::generate(1, 1, &bad).is_err());
}

/// The content hashes of `hygiene::TEST_SETS` are those of the files shipped in `data/`, and
/// every shipped test file is in the table.
#[test]
fn shipped_test_set_table_matches_the_data_folder() {
    use workbench_core::data::hygiene::{shipped_test_set, TEST_SETS};
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    for t in TEST_SETS {
        let found = shipped_test_set(&data.join(t.file)).unwrap();
        assert_eq!(found, Some(*t), "{}", t.file);
    }
    let mut shipped = 0;
    for e in std::fs::read_dir(&data).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.contains("_test.") {
            shipped += 1;
            assert!(
                TEST_SETS.iter().any(|t| t.file == name),
                "{name} not in TEST_SETS"
            );
        }
    }
    assert_eq!(shipped, TEST_SETS.len());
    // An edited copy is not recognised.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.jsonl");
    let mut bytes = std::fs::read(data.join("gsm8k_test.jsonl")).unwrap();
    bytes.push(b'\n');
    std::fs::write(&p, bytes).unwrap();
    assert_eq!(shipped_test_set(&p).unwrap(), None);
}

#[test]
fn index_loader_validates_covers_every_row_and_resumes_from_its_cursor() {
    use workbench_core::data::loader::IndexLoader;
    for (len, bs, drop_last, want) in [
        (0, 2, false, "no rows"),
        (5, 0, false, "batch_size"),
        (3, 4, true, "drop_last"),
    ] {
        let e = IndexLoader::new(len, bs, true, drop_last, 0).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    let mut l = IndexLoader::new(5, 2, true, false, 7).unwrap();
    let mut epoch: Vec<usize> = (0..3).flat_map(|_| l.next_indices().unwrap()).collect();
    epoch.sort();
    assert_eq!(
        epoch,
        vec![0, 1, 2, 3, 4],
        "one epoch: every row once, a short last batch"
    );
    let saved = l.cursor;
    let next = l.next_indices().unwrap();
    let mut r = IndexLoader::new(5, 2, true, false, 7).unwrap();
    r.cursor = saved;
    assert_eq!(
        r.next_indices().unwrap(),
        next,
        "a restored cursor gives the same batch"
    );
}
