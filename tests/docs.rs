//! API reference generation from registration metadata.

use rhai::{CustomType, Engine, FuncRegistration, TypeBuilder};
use workbench::docs::{api_markdown, fn_kind, strip_doc_comments, undocumented, FnKind};

#[derive(Debug, Clone)]
struct Point {
    x: i64,
}

impl CustomType for Point {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("Point")
            .with_comments(&["/// A point on a line."])
            .with_get_set("x", |p: &mut Self| p.x, |p: &mut Self, v: i64| p.x = v);
    }
}

fn documented_engine() -> Engine {
    let mut engine = Engine::new();
    FuncRegistration::new("scale")
        .with_comments(["/// Multiplies `x` by `k`.\n///\n/// # Example\n///\n///     scale(2, 3)"])
        .with_params_info(["x: i64", "k: i64", "i64"])
        .register_into_engine(&mut engine, |x: i64, k: i64| x * k);
    FuncRegistration::new("greet")
        .with_comments(["/** Says hello\n * to `name`. */"])
        .with_params_info(["name: &str", "String"])
        .register_into_engine(&mut engine, |name: &str| format!("hello {name}"));
    engine
}

#[test]
fn markdown_lists_functions_with_docs_and_signatures() {
    let engine = documented_engine();
    let md = api_markdown(&engine).unwrap();
    assert!(md.starts_with("# Rhai API reference\n"), "{md}");
    assert!(md.contains("workbench doc"), "{md}");
    assert!(md.contains("### scale"), "{md}");
    assert!(md.contains("### greet"), "{md}");
    assert!(md.contains("scale(x: i64, k: i64) -> i64"), "{md}");
    assert!(md.contains("greet(name: "), "{md}");
    assert!(md.contains("Multiplies `x` by `k`."), "{md}");
    assert!(md.contains("    scale(2, 3)"), "indentation kept: {md}");
    assert!(
        md.contains("#### Example"),
        "doc headings nest below the function: {md}"
    );
    assert!(md.contains("Says hello\nto `name`."), "{md}");
    assert!(!md.contains("///") && !md.contains("/**"), "{md}");
    assert!(md.contains("```rust"), "{md}");
    // Sorted: greet before scale.
    assert!(md.find("### greet").unwrap() < md.find("### scale").unwrap());
    // Standard library functions are not listed.
    assert!(!md.contains("### print"), "{md}");
}

#[test]
fn markdown_is_deterministic() {
    let engine = documented_engine();
    assert_eq!(
        api_markdown(&engine).unwrap(),
        api_markdown(&engine).unwrap()
    );
    assert_eq!(
        api_markdown(&documented_engine()).unwrap(),
        api_markdown(&documented_engine()).unwrap()
    );
}

#[test]
fn custom_types_and_properties_are_shown_readably() {
    let mut engine = documented_engine();
    engine.build_type::<Point>();
    let md = api_markdown(&engine).unwrap();
    assert!(md.contains("## Types"), "{md}");
    assert!(md.contains("### `Point`"), "{md}");
    assert!(md.contains("A point on a line."), "{md}");
    assert!(md.contains("property `x` (get)"), "{md}");
    assert!(md.contains("property `x` (set)"), "{md}");
    assert!(md.contains("Point.x -> i64"), "display names: {md}");
    assert!(md.contains("Point.x = i64"), "{md}");
    // Getters and setters are exempt from the documentation requirement.
    assert!(undocumented(&engine).unwrap().is_empty());
}

#[test]
fn no_custom_types_means_no_types_section() {
    let md = api_markdown(&documented_engine()).unwrap();
    assert!(!md.contains("## Types"), "{md}");
}

#[test]
fn undocumented_functions_are_found() {
    let mut engine = documented_engine();
    assert!(undocumented(&engine).unwrap().is_empty());
    engine.register_fn("secret", |x: i64| x + 1);
    let missing = undocumented(&engine).unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].starts_with("secret("), "{missing:?}");
}

#[test]
fn names_are_classified() {
    assert_eq!(fn_kind("scale"), FnKind::Function);
    assert_eq!(fn_kind("get$x"), FnKind::Getter("x".into()));
    assert_eq!(fn_kind("set$x"), FnKind::Setter("x".into()));
    assert_eq!(fn_kind("index$get$"), FnKind::IndexGetter);
    assert_eq!(fn_kind("index$set$"), FnKind::IndexSetter);
    assert_eq!(fn_kind("+"), FnKind::Operator);
}

#[test]
fn doc_comment_markers_are_stripped() {
    assert_eq!(strip_doc_comments(&["/// a\n///   b"]), "a\n  b");
    assert_eq!(strip_doc_comments(&["/**\n * a\n *\n * b\n */"]), "a\n\nb");
    assert_eq!(strip_doc_comments::<&str>(&[]), "");
}
