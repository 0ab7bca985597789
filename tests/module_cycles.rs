//! No import cycle among the modules of any crate of the workspace.
//!
//! A module uses another when its code (comments and test modules left out) names a path into
//! it: `crate::a::b`, `super::b`, `self::b`. Such a use is an edge between the two modules
//! under their closest common ancestor that hold them (siblings), so `api::tasks` using
//! `ui::layout` is the edge `api → ui`; a module using its own ancestor or descendant is no
//! edge (a parent declares and re-exports its children; a child uses what its parent defines).
//! Among the children of each module, the edges must not form a cycle: each module then has
//! a place in a layering that a reader can follow from the bottom up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source roots, from the workspace's root.
const CRATES: [&str; 6] = [
    "common/src",
    "dtp/src",
    "taskpilot/src",
    "apikit/src",
    "testkit/src",
    "suite",
];

type Module = Vec<String>;

#[test]
fn no_module_of_any_crate_is_in_an_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cycles = Vec::new();
    for src in CRATES {
        // A binary's `main.rs` and `bin/` files are crates of their own, which name the
        // library by its crate name: they add no edge among its modules.
        let files: Vec<PathBuf> = rust_files(&root.join(src))
            .into_iter()
            .filter(|f| {
                let relative = f.strip_prefix(root.join(src)).unwrap_or(f);
                relative != Path::new("main.rs") && !relative.starts_with("bin")
            })
            .collect();
        assert!(!files.is_empty(), "no source files under {src}");
        let modules: BTreeMap<Module, String> = files
            .iter()
            .map(|file| {
                let text = std::fs::read_to_string(file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                (module_of(&root.join(src), file), code_of(&text))
            })
            .collect();
        let known: BTreeSet<&Module> = modules.keys().collect();
        let reexports: BTreeMap<(Module, String), Module> = modules
            .iter()
            .flat_map(|(module, code)| reexports_of(module, code))
            .collect();
        let mut edges: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
        for (module, code) in &modules {
            for target in paths_named(module, code) {
                let Some(target) = resolve(&known, &reexports, &target) else {
                    continue;
                };
                if let Some((parent, from, to)) = siblings(module, &target) {
                    edges.entry(parent).or_default().insert((from, to));
                }
            }
        }
        for (parent, edges) in edges {
            for cycle in cycles_among(&edges) {
                cycles.push(format!(
                    "{src}: under `{}`: {}",
                    if parent.is_empty() {
                        "crate".to_owned()
                    } else {
                        parent.join("::")
                    },
                    cycle.join(" → ")
                ));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that use each other, directly or around a loop:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_check_finds_a_cycle_and_resolves_paths_from_crate_super_self_and_re_exports() {
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .map(|(x, y)| (x.to_owned(), y.to_owned()))
        .collect();
    assert_eq!(cycles_among(&edges), vec![vec!["a", "b", "c"]]);

    let module: Module = vec!["api".into(), "tasks".into()];
    let named = paths_named(
        &module,
        "use super::queues::x; use crate::ui::layout; use super::{list::{a, b}, self};",
    );
    for path in [["api", "queues", "x"], ["api", "list", "a"]] {
        assert!(
            named.contains(&path.map(str::to_owned).to_vec()),
            "{path:?} in {named:?}"
        );
    }
    assert_eq!(
        siblings(&module, &vec!["ui".to_owned(), "layout".to_owned()]),
        Some((vec![], "api".to_owned(), "ui".to_owned()))
    );
    assert_eq!(siblings(&module, &vec!["api".to_owned()]), None);

    // `ui::Ctx`, re-exported from `ui::access`, is a use of `ui::access`.
    let ui: Module = vec!["ui".into()];
    let access: Module = vec!["ui".into(), "access".into()];
    let known: BTreeSet<&Module> = [&ui, &access].into_iter().collect();
    let reexports: BTreeMap<_, _> = reexports_of(&ui, "pub use access::Ctx;")
        .into_iter()
        .collect();
    let ctx = vec!["ui".to_owned(), "Ctx".to_owned()];
    assert_eq!(resolve(&known, &reexports, &ctx), Some(access.clone()));
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The module a file holds: `src/api/tasks.rs` and `src/api/tasks/mod.rs` are `api::tasks`;
/// `lib.rs` is the crate's root.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments and its `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that `code`, in `module`, names from `crate::`, `super::` or `self::`, made
/// absolute; a `use a::{b, c::d}` names `a::b` and `a::c::d`.
fn paths_named(module: &Module, code: &str) -> Vec<Module> {
    let mut named = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(start) {
            let at = from + found;
            from = at + start.len();
            let preceded = at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            if preceded {
                continue;
            }
            for path in use_tree(&code[at..]) {
                named.push(absolute(module, &path));
            }
        }
    }
    named
}

/// The paths of the use tree (or plain path) at the start of `text`, as segments.
fn use_tree(text: &str) -> Vec<Vec<String>> {
    let path: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let prefix: Vec<String> = path
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let rest = &text[path.len()..];
    if !(path.ends_with("::") && rest.starts_with('{')) {
        return vec![prefix];
    }
    // The group's items, split at the commas outside nested braces.
    let mut depth = 0;
    let mut items = Vec::new();
    let mut item_start = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(&rest[item_start..i]);
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(&rest[item_start..i]);
                item_start = i + 1;
            }
            _ => {}
        }
    }
    let mut paths = Vec::new();
    for item in items {
        for tail in use_tree(item.trim()) {
            let mut path = prefix.clone();
            path.extend(tail.into_iter().filter(|s| s != "self"));
            paths.push(path);
        }
    }
    paths
}

/// `path` (from `crate`, `super` or `self`), named in `module`, from the crate's root.
fn absolute(module: &Module, path: &[String]) -> Module {
    let mut segments = path.iter().map(String::as_str).peekable();
    let mut absolute: Module = match segments.peek() {
        Some(&"crate") => {
            segments.next();
            Vec::new()
        }
        Some(&"self") => {
            segments.next();
            module.clone()
        }
        _ => module.clone(),
    };
    while segments.peek() == Some(&"super") {
        segments.next();
        absolute.pop();
    }
    absolute.extend(segments.map(str::to_owned));
    absolute
}

/// What each `pub use` (of any visibility) of `module` makes it name: `(module, name)` to the
/// path it stands for. A path through a re-export is a use of the module the item comes from.
fn reexports_of(module: &Module, code: &str) -> Vec<((Module, String), Module)> {
    let mut found = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(tree) = ["pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|start| statement.strip_prefix(start))
        else {
            continue;
        };
        let tree = tree.trim();
        let rooted = ["crate::", "super::", "self::"]
            .iter()
            .any(|start| tree.starts_with(start));
        let tree = if rooted {
            tree.to_owned()
        } else {
            // A path from a child module of this one (`pub use access::Ctx`).
            format!("self::{tree}")
        };
        for path in use_tree(&tree) {
            let Some(name) = path.last().filter(|n| *n != "*") else {
                continue;
            };
            found.push(((module.clone(), name.clone()), absolute(module, &path)));
        }
    }
    found
}

/// The module `path` is in, following re-exports to where their items come from.
fn resolve(
    known: &BTreeSet<&Module>,
    reexports: &BTreeMap<(Module, String), Module>,
    path: &Module,
) -> Option<Module> {
    let mut path = path.clone();
    // Re-exports of re-exports, a few deep at most.
    for _ in 0..8 {
        let module = deepest_known(known, &path)?;
        let Some(name) = path.get(module.len()) else {
            return Some(module);
        };
        match reexports.get(&(module.clone(), name.clone())) {
            Some(source) if source != &path => {
                let mut next = source.clone();
                next.extend(path[module.len() + 1..].iter().cloned());
                path = next;
            }
            _ => return Some(module),
        }
    }
    deepest_known(known, &path)
}

/// The deepest module of `known` that `path` is in.
fn deepest_known(known: &BTreeSet<&Module>, path: &Module) -> Option<Module> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
}

/// The use of `to` by `from` as an edge between siblings: their closest common ancestor and
/// the children of it that hold each. `None` when one holds the other.
fn siblings(from: &Module, to: &Module) -> Option<(Module, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((
        from[..common].to_vec(),
        from[common].clone(),
        to[common].clone(),
    ))
}

/// The strongly connected components of more than one module (Tarjan's algorithm), each sorted.
fn cycles_among(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.next.get(node).cloned().unwrap_or_default() {
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
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    let mut nodes = BTreeSet::new();
    for (from, to) in edges {
        walk.next
            .entry(from.as_str())
            .or_default()
            .push(to.as_str());
        nodes.insert(from.as_str());
        nodes.insert(to.as_str());
    }
    for node in nodes {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.found.sort();
    walk.found
}
