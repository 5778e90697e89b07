//! The module structure of a crate, as imports between its modules, and the circles in it.
//!
//! The rule: the children of every module (the crate's top-level modules, the files of a
//! directory module) import one another without a circle, so each level reads as layers,
//! lowest first. A module and its own children are one unit seen from outside, so a child
//! naming its parent (`super::X`) or a parent its child is not an edge. Test modules
//! (`#[cfg(test)]`) are left out: tests may reach up to whatever they need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// A module's path from the crate root (`["chain", "index"]`; empty: the root).
pub type ModulePath = Vec<String>;

/// Each module of a crate and the modules it names (resolved to the deepest module
/// that exists).
#[derive(Debug, Default)]
pub struct Imports {
    pub modules: BTreeSet<ModulePath>,
    pub edges: BTreeMap<ModulePath, BTreeSet<ModulePath>>,
}

/// Modules that import one another in a circle, under their common parent: all of them
/// (a strongly connected component), and one shortest circle through the first.
#[derive(Debug, PartialEq, Eq)]
pub struct Circle {
    pub parent: ModulePath,
    pub members: Vec<String>,
    pub example: Vec<String>,
}

impl std::fmt::Display for Circle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parent = if self.parent.is_empty() {
            "crate".to_string()
        } else {
            self.parent.join("::")
        };
        write!(
            f,
            "in {parent}, {} import one another (for one: {}",
            self.members.join(", "),
            self.example.join(" -> ")
        )?;
        if let Some(first) = self.example.first() {
            write!(f, " -> {first}")?;
        }
        write!(f, ")")
    }
}

/// Reads the crate whose root file is `root` (`src/lib.rs`), following `mod` items.
pub fn read_crate(root: &Path) -> Result<Imports, String> {
    let mut imports = Imports::default();
    let mut found = Vec::new();
    read_file(root, Vec::new(), true, &mut found)?;
    for (path, _) in &found {
        imports.modules.insert(path.clone());
    }
    for (from, named) in found {
        for target in named {
            let to = deepest_module(&imports.modules, &target);
            imports.edges.entry(from.clone()).or_default().insert(to);
        }
    }
    Ok(imports)
}

/// The circles among the children of every module, each listed once.
pub fn circles(imports: &Imports) -> Vec<Circle> {
    let parents: BTreeSet<ModulePath> = imports
        .modules
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut circles = Vec::new();
    for parent in parents {
        // Edges between the children of `parent`: from anything under child a to
        // anything under child b.
        let child_of = |m: &ModulePath| -> Option<String> {
            (m.len() > parent.len() && m.starts_with(&parent)).then(|| m[parent.len()].clone())
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, targets) in &imports.edges {
            let Some(a) = child_of(from) else { continue };
            graph.entry(a.clone()).or_default();
            for to in targets {
                if let Some(b) = child_of(to).filter(|b| *b != a) {
                    graph.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        for members in strongly_connected(&graph) {
            circles.push(Circle {
                parent: parent.clone(),
                example: one_circle(&graph, &members),
                members: members.into_iter().collect(),
            });
        }
    }
    circles
}

/// The components of more than one node (Tarjan's algorithm, iteration order fixed).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.insert(top.to_string());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// One circle through a component, from its first member, for the message: a shortest
/// path back to the start (breadth first, within the component).
fn one_circle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    members: &BTreeSet<String>,
) -> Vec<String> {
    let start = members.first().expect("a component has members").clone();
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flatten() {
            if !members.contains(next) {
                continue;
            }
            if *next == start {
                let mut circle = vec![node.clone()];
                while let Some(before) = came_from.get(circle.last().expect("not empty")) {
                    circle.push(before.clone());
                }
                circle.reverse();
                return circle;
            }
            if !came_from.contains_key(next) && *next != start {
                came_from.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    members.iter().cloned().collect()
}

/// The module of `path` that exists: its longest prefix among `modules`.
fn deepest_module(modules: &BTreeSet<ModulePath>, path: &[String]) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
        .unwrap_or_default()
}

/// Reads the file of module `module` and, through its `mod` items, the files below; each
/// module found goes to `found` with the paths it names (from the crate root).
fn read_file(
    file: &Path,
    module: ModulePath,
    owns_directory: bool,
    found: &mut Vec<(ModulePath, Vec<Vec<String>>)>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let parsed = syn::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    // `a.rs` holds module a, whose children are in `a/`; `a/mod.rs` and `lib.rs` own their
    // directory already.
    let directory = if owns_directory {
        file.parent().expect("a file has a directory").to_path_buf()
    } else {
        file.with_extension("")
    };
    read_items(&parsed.items, &module, &directory, found)
}

fn read_items(
    items: &[syn::Item],
    module: &ModulePath,
    directory: &Path,
    found: &mut Vec<(ModulePath, Vec<Vec<String>>)>,
) -> Result<(), String> {
    let mut names = Names {
        module,
        named: Vec::new(),
    };
    for item in items {
        match item {
            syn::Item::Mod(inner) if is_test_only(&inner.attrs) => {}
            syn::Item::Mod(inner) => {
                let mut child = module.clone();
                child.push(inner.ident.to_string());
                match &inner.content {
                    // An inline module: part of this file, with a module path of its own.
                    Some((_, items)) => read_items(
                        items,
                        &child,
                        &directory.join(inner.ident.to_string()),
                        found,
                    )?,
                    None => {
                        let name = inner.ident.to_string();
                        let flat = directory.join(format!("{name}.rs"));
                        let (file, owns) = if flat.exists() {
                            (flat, false)
                        } else {
                            (directory.join(&name).join("mod.rs"), true)
                        };
                        read_file(&file, child, owns, found)?;
                    }
                }
            }
            item => names.visit_item(item),
        }
    }
    found.push((module.clone(), names.named));
    Ok(())
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Path>()
                .is_ok_and(|path| path.is_ident("test"))
    })
}

/// Collects every path an item names that starts at the crate (`crate::`, `super::`,
/// `self::`), made absolute.
struct Names<'a> {
    module: &'a ModulePath,
    named: Vec<Vec<String>>,
}

impl Names<'_> {
    /// `segments` made absolute, if it starts at the crate.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let mut at: Vec<String> = match segments.first()?.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => self.module.clone(),
            _ => return None,
        };
        let mut rest = if segments[0] == "crate" || segments[0] == "self" {
            &segments[1..]
        } else {
            segments
        };
        while rest.first().is_some_and(|s| s == "super") {
            at.pop();
            rest = &rest[1..];
        }
        at.extend(rest.iter().cloned());
        Some(at)
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.note(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.note(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.note(prefix),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    fn note(&mut self, segments: &[String]) {
        if let Some(path) = self.absolute(segments) {
            self.named.push(path);
        }
    }
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.note(&segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Inline modules inside functions: rare, left to the file's own reading.
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`format!`, `json!`) are tokens, not paths: read the
        // ones that start at the crate.
        let mut tokens = Vec::new();
        flatten(mac.tokens.clone(), &mut tokens);
        let mut i = 0;
        while i < tokens.len() {
            if matches!(tokens[i].as_str(), "crate" | "super" | "self") {
                let mut segments = vec![tokens[i].clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|t| t == ":")
                    && tokens.get(j + 1).is_some_and(|t| t == ":")
                {
                    match tokens.get(j + 2) {
                        Some(next) if next.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                            segments.push(next.clone());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                self.note(&segments);
                i = j;
            } else {
                i += 1;
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// A macro's tokens as text, groups opened.
fn flatten(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
    for token in tokens {
        match token {
            proc_macro2::TokenTree::Group(group) => flatten(group.stream(), out),
            other => out.push(other.to_string()),
        }
    }
}

/// The source root of a workspace crate, from this crate's directory.
pub fn crate_root(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
        .join("lib.rs")
}
