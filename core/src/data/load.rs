//! File loaders: JSON Lines and CSV-with-header into [`Dataset`]s of string-keyed rows.
//!
//! Reference: the JSON Lines convention (one JSON object per line, blank lines ignored) and
//! RFC 4180 CSV (comma separated, `"`-quoted fields with `""` escapes, quoted fields may span
//! lines, CRLF or LF line ends), which is what `pandas.read_csv` reads for d1's Sudoku file.
//! CSV values are kept as JSON strings (no type guessing: `"0140..."` must stay a string).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{DataError, Dataset, Example, Origin};

/// Reads a file as UTF-8 text (a leading byte-order mark is dropped).
fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::Parse {
        path: path.to_path_buf(),
        line: 1 + line_of_byte(e.as_bytes(), e.utf8_error().valid_up_to()),
        message: "file is not valid UTF-8".into(),
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

fn line_of_byte(bytes: &[u8], at: usize) -> usize {
    bytes.iter().take(at).filter(|&&b| b == b'\n').count()
}

/// Loads a JSON Lines file: one JSON object per non-blank line.
///
/// Errors name the file and line of the first malformed line.
pub fn load_jsonl(path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let text = read_text(path)?;
    parse_jsonl(&text, path)
}

/// Parses JSON Lines text; `path` is only used to label errors and rows.
pub fn parse_jsonl(text: &str, path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let file: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| DataError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            message: format!("invalid JSON: {e}"),
        })?;
        let Value::Object(fields) = value else {
            return Err(DataError::Parse {
                path: path.to_path_buf(),
                line: line_no,
                message: "expected a JSON object on each line".into(),
            });
        };
        examples.push(Example::new(
            fields,
            Origin {
                file: file.clone(),
                line: line_no,
            },
        ));
    }
    Ok(Dataset::from_examples(dataset_name(path), examples))
}

/// Loads a JSON file holding an array of objects (each element gets "line" = its 1-based index).
fn load_json_array(path: &Path, text: &str) -> Result<Dataset, DataError> {
    let value: Value = serde_json::from_str(text).map_err(|e| DataError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: format!("invalid JSON: {e}"),
    })?;
    let Value::Array(items) = value else {
        return Err(DataError::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: "expected an array of objects".into(),
        });
    };
    let file: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
    let mut examples = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(DataError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("element {} is not an object", i + 1),
            });
        };
        examples.push(Example::new(
            fields,
            Origin {
                file: file.clone(),
                line: i + 1,
            },
        ));
    }
    Ok(Dataset::from_examples(dataset_name(path), examples))
}

/// Loads a CSV file whose first record is the header; each further record becomes a row of
/// string values keyed by the header names.
///
/// Errors name the file and the line where the offending record starts (wrong number of
/// columns, an unterminated quote, a duplicate or empty header name).
pub fn load_csv(path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let text = read_text(path)?;
    parse_csv(&text, path)
}

/// Parses CSV text with a header row; `path` is only used to label errors and rows.
pub fn parse_csv(text: &str, path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let records = split_csv_records(text, path)?;
    let mut iter = records.into_iter();
    let Some((_, header)) = iter.next() else {
        return Ok(Dataset::from_examples(dataset_name(path), Vec::new()));
    };
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for name in header {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(DataError::Parse {
                path: path.to_path_buf(),
                line: 1,
                message: "empty column name in the header".into(),
            });
        }
        if names.contains(&name) {
            return Err(DataError::Parse {
                path: path.to_path_buf(),
                line: 1,
                message: format!("duplicate column name `{name}` in the header"),
            });
        }
        names.push(name);
    }
    let file: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
    let mut examples = Vec::new();
    for (line, record) in iter {
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != names.len() {
            return Err(DataError::Parse {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "expected {} columns ({}), found {}",
                    names.len(),
                    names.join(","),
                    record.len()
                ),
            });
        }
        let mut fields = Map::new();
        for (name, value) in names.iter().zip(record) {
            fields.insert(name.clone(), Value::String(value));
        }
        examples.push(Example::new(
            fields,
            Origin {
                file: file.clone(),
                line,
            },
        ));
    }
    Ok(Dataset::from_examples(dataset_name(path), examples))
}

/// Splits CSV text into records of fields, each with the 1-based line where it starts.
fn split_csv_records(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>, DataError> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut quote_line = 1usize;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            match c {
                '"' => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        in_quotes = false;
                    }
                }
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted_field => {
                in_quotes = true;
                quoted_field = true;
                quote_line = line;
            }
            '"' => {
                return Err(DataError::Parse {
                    path: path.to_path_buf(),
                    line,
                    message: "stray `\"` inside an unquoted field".into(),
                })
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
                records.push((record_line, std::mem::take(&mut fields)));
                line += 1;
                record_line = line;
                any = false;
            }
            _ => {
                if quoted_field {
                    return Err(DataError::Parse {
                        path: path.to_path_buf(),
                        line,
                        message: "text after a closing quote".into(),
                    });
                }
                field.push(c)
            }
        }
    }
    if in_quotes {
        return Err(DataError::Parse {
            path: path.to_path_buf(),
            line: quote_line,
            message: "unterminated quoted field".into(),
        });
    }
    if any {
        fields.push(field);
        records.push((record_line, fields));
    }
    Ok(records)
}

/// Loads a data file by its extension: `.jsonl` (JSON Lines), `.json` (JSON Lines, or one
/// array of objects if the file starts with `[`), `.csv` (with header).
pub fn load_file(path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jsonl" | "ndjson" => load_jsonl(path),
        "json" => {
            let text = read_text(path)?;
            if text.trim_start().starts_with('[') {
                load_json_array(path, &text)
            } else {
                parse_jsonl(&text, path)
            }
        }
        "csv" => load_csv(path),
        _ => Err(DataError::UnsupportedFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Checks that every row of `dataset` has each of `fields` (non-null); the first miss is
/// reported with its file, line and field name.
pub fn require_fields(dataset: &Dataset, fields: &[&str]) -> Result<(), DataError> {
    for ex in dataset.iter() {
        for f in fields {
            ex.field(f)?;
        }
    }
    Ok(())
}

fn dataset_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| PathBuf::from(path).to_string_lossy().into_owned())
}
