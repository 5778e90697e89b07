//! The modules of `node` and `core` import one another without circles (the rule is in
//! `apiary_system_tests::structure`), and the check finds a circle where there is one.

use apiary_system_tests::structure::{circles, crate_root, read_crate, Circle};

fn assert_layered(name: &str) {
    let imports = read_crate(&crate_root(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"));
    assert!(
        imports.modules.len() > 5,
        "{name}: only {} modules found: the reading is broken",
        imports.modules.len()
    );
    let found: Vec<String> = circles(&imports).iter().map(Circle::to_string).collect();
    assert!(
        found.is_empty(),
        "{name} has import circles (break each by moving what both sides need below them):\n{}",
        found.join("\n")
    );
}

#[test]
fn node_modules_have_no_import_circles() {
    assert_layered("node");
}

#[test]
fn core_modules_have_no_import_circles() {
    assert_layered("core");
}

#[test]
fn a_deliberate_circle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("hub")).unwrap();
    // low -> hub::inner (a path in a body), hub -> low (a use): a circle. hub::inner ->
    // top (through super::super) and top -> low join it; low's test module's use of top
    // is left out.
    let files = [
        ("lib.rs", "mod low;\nmod hub;\nmod top;\n"),
        (
            "low.rs",
            "pub fn f() { crate::hub::inner::g(); }\n#[cfg(test)]\nmod tests { use crate::top::T; }\n",
        ),
        ("hub/mod.rs", "pub mod inner;\nuse crate::low::f;\n"),
        ("hub/inner.rs", "pub fn g() { super::super::top::h(); }\n"),
        (
            "top.rs",
            "pub struct T;\npub fn h() { let _ = format!(\"{}\", 1); crate::low::f(); }\n",
        ),
    ];
    for (path, text) in files {
        std::fs::write(src.join(path), text).unwrap();
    }
    let imports = read_crate(&src.join("lib.rs")).unwrap();
    let found = circles(&imports);
    assert_eq!(
        found,
        vec![Circle {
            parent: vec![],
            members: vec!["hub".into(), "low".into(), "top".into()],
            example: vec!["hub".into(), "low".into()],
        }],
        "{found:?}"
    );
    assert_eq!(
        found[0].to_string(),
        "in crate, hub, low, top import one another (for one: hub -> low -> hub)"
    );
}
