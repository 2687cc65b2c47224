//! The house rules, read from the crates' own source: every `use` and every `crate::…` or
//! `super::…` path in production code (test modules excluded) is an arrow from one file to
//! another. Arrows must point down the layers (roles → use cases → ports → domain), adapters
//! are named only where a process is assembled, and no two files import each other, directly
//! or round a longer circle (the one exception the crypto crate has is listed below).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The service crate's layers, bottom up. A module belongs to the layer of its longest
/// listed prefix. The use cases are the election's (`service`) and the referendum's.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "domain",
        &["domain", "election", "sealing", "memory", "record_io"],
    ),
    ("ports", &["ports", "metrics"]),
    ("adapters", &["adapters"]),
    ("use cases", &["service", "referendum"]),
    ("HTTP role", &["api"]),
    ("worker role", &["workers"]),
    ("composition", &["commands", "main", "lib"]),
];

/// Which layers each layer may import from (besides itself).
const MAY_USE: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("ports", &["domain"]),
    ("adapters", &["domain", "ports"]),
    ("use cases", &["domain", "ports"]),
    ("HTTP role", &["domain", "ports", "use cases"]),
    ("worker role", &["domain", "ports", "use cases"]),
    (
        "composition",
        &[
            "domain",
            "ports",
            "adapters",
            "use cases",
            "HTTP role",
            "worker role",
        ],
    ),
];

/// Pairs of files allowed to import each other: the group's arithmetic and its fixed-base
/// tables are one algorithm split for size.
const ALLOWED_CIRCLES: &[&[&str]] = &[&["fixed_base", "group"]];

#[test]
fn arrows_point_down_the_layers() {
    let graph = ModuleGraph::read(&crate_src("amarvote"));
    let mut wrong = Vec::new();
    for (from, targets) in &graph.arrows {
        let from_layer = layer_of(from);
        for to in targets {
            let to_layer = layer_of(to);
            if from_layer != to_layer && !may_use(from_layer, to_layer) {
                wrong.push(format!("{from} ({from_layer}) → {to} ({to_layer})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn adapters_are_named_only_where_a_process_is_assembled() {
    // Adapters are chosen where a process is assembled (the commands), nowhere else.
    let graph = ModuleGraph::read(&crate_src("amarvote"));
    let mut wrong = Vec::new();
    for (from, targets) in &graph.arrows {
        if layer_of(from) == "composition" {
            continue;
        }
        for to in targets.iter().filter(|to| to.starts_with("adapters")) {
            if !from.starts_with("adapters") {
                wrong.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "adapters named outside a composition root:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_two_files_import_each_other() {
    for name in ["amarvote", "electionguard"] {
        let graph = ModuleGraph::read(&crate_src(name));
        let circles: Vec<Vec<String>> = graph
            .circles()
            .into_iter()
            .filter(|circle| {
                !ALLOWED_CIRCLES
                    .iter()
                    .any(|allowed| same_members(allowed, circle))
            })
            .collect();
        assert!(
            circles.is_empty(),
            "{name}: files that import each other (directly or round a circle):\n  {}",
            circles
                .iter()
                .map(|c| c.join(" ↔ "))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

#[test]
fn the_reader_sees_arrows_it_must_see() {
    // The parser itself, on the shapes of `use` the crates write.
    let source = r#"
        //! crate::nothing in a doc comment
        use crate::{alpha::{Beta, gamma::Delta}, epsilon as e};
        use super::sibling::Thing;
        fn f() { let s = "crate::in_a_string"; crate::zeta::call(); }
        #[cfg(test)]
        mod tests { use crate::only_in_tests; }
    "#;
    let modules: BTreeSet<String> = [
        "alpha",
        "alpha::gamma",
        "epsilon",
        "zeta",
        "parent::sibling",
        "parent::me",
        "nothing",
        "in_a_string",
        "only_in_tests",
    ]
    .iter()
    .map(|m| m.to_string())
    .collect();
    let arrows = arrows_of("parent::me", source, &modules);
    let expected: BTreeSet<String> = [
        "alpha",
        "alpha::gamma",
        "epsilon",
        "zeta",
        "parent::sibling",
    ]
    .iter()
    .map(|m| m.to_string())
    .collect();
    assert_eq!(arrows, expected);
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

fn layer_of(module: &str) -> &'static str {
    let mut best: Option<(&str, usize)> = None;
    for (layer, prefixes) in LAYERS {
        for prefix in *prefixes {
            let matches = module == *prefix || module.starts_with(&format!("{prefix}::"));
            if matches && best.is_none_or(|(_, len)| prefix.len() > len) {
                best = Some((layer, prefix.len()));
            }
        }
    }
    best.map(|(layer, _)| layer)
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

fn may_use(from: &str, to: &str) -> bool {
    MAY_USE
        .iter()
        .any(|(layer, allowed)| *layer == from && allowed.contains(&to))
}

fn same_members(allowed: &[&str], circle: &[String]) -> bool {
    allowed.len() == circle.len() && allowed.iter().all(|m| circle.iter().any(|c| c == m))
}

/// Files as modules (`service::ballots`) and the modules each one imports.
struct ModuleGraph {
    arrows: BTreeMap<String, BTreeSet<String>>,
}

impl ModuleGraph {
    fn read(src: &Path) -> ModuleGraph {
        let mut files = Vec::new();
        collect_rs_files(src, &mut files);
        let modules: BTreeMap<String, PathBuf> = files
            .into_iter()
            .map(|path| (module_name(src, &path), path))
            .collect();
        let names: BTreeSet<String> = modules.keys().cloned().collect();
        let arrows = modules
            .iter()
            .map(|(module, path)| {
                let source = fs::read_to_string(path).expect("source file reads");
                let mut targets = arrows_of(module, &source, &names);
                targets.remove(module);
                (module.clone(), targets)
            })
            .collect();
        ModuleGraph { arrows }
    }

    /// Strongly connected groups of more than one file (Tarjan's algorithm).
    fn circles(&self) -> Vec<Vec<String>> {
        let mut tarjan = Tarjan {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            next: 0,
            found: Vec::new(),
        };
        for module in self.arrows.keys() {
            if !tarjan.index.contains_key(module) {
                tarjan.visit(module);
            }
        }
        tarjan
            .found
            .into_iter()
            .filter(|group| group.len() > 1)
            .collect()
    }
}

struct Tarjan<'g> {
    graph: &'g ModuleGraph,
    index: BTreeMap<String, usize>,
    low: BTreeMap<String, usize>,
    stack: Vec<String>,
    on_stack: BTreeSet<String>,
    next: usize,
    found: Vec<Vec<String>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, module: &str) {
        self.index.insert(module.to_string(), self.next);
        self.low.insert(module.to_string(), self.next);
        self.next += 1;
        self.stack.push(module.to_string());
        self.on_stack.insert(module.to_string());
        for target in self.graph.arrows.get(module).into_iter().flatten() {
            if !self.index.contains_key(target) {
                self.visit(target);
                let low = self.low[module].min(self.low[target]);
                self.low.insert(module.to_string(), low);
            } else if self.on_stack.contains(target) {
                let low = self.low[module].min(self.index[target]);
                self.low.insert(module.to_string(), low);
            }
        }
        if self.low[module] == self.index[module] {
            let mut group = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(&member);
                let done = member == module;
                group.push(member);
                if done {
                    break;
                }
            }
            group.sort();
            self.found.push(group);
        }
    }
}

fn collect_rs_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("source directory reads") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// `src/service/ballots.rs` → `service::ballots`; `src/service/mod.rs` → `service`;
/// `src/lib.rs` → `lib`.
fn module_name(src: &Path, path: &Path) -> String {
    let relative = path
        .strip_prefix(src)
        .expect("file under src")
        .with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The modules a file's production code names, resolved against the crate's modules.
fn arrows_of(module: &str, source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = without_test_modules(&without_comments_and_strings(source));
    let here: Vec<&str> = if module == "lib" || module == "main" {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut arrows = BTreeSet::new();
    for path in paths_in(&code) {
        let absolute = match path.first().map(String::as_str) {
            Some("crate") => path[1..].to_vec(),
            Some("super") => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                let base = &here[..here.len().saturating_sub(ups)];
                base.iter()
                    .map(|s| s.to_string())
                    .chain(path[ups..].iter().cloned())
                    .collect()
            }
            Some("self") => here
                .iter()
                .map(|s| s.to_string())
                .chain(path[1..].iter().cloned())
                .collect(),
            Some(first) if modules.contains(&child(&here, first)) => here
                .iter()
                .map(|s| s.to_string())
                .chain(path.iter().cloned())
                .collect(),
            _ => continue,
        };
        if let Some(target) = longest_module(&absolute, modules) {
            arrows.insert(target);
        }
    }
    arrows
}

fn child(here: &[&str], name: &str) -> String {
    here.iter()
        .copied()
        .chain(std::iter::once(name))
        .collect::<Vec<_>>()
        .join("::")
}

fn longest_module(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// Every path a `use` tree expands to, and every inline path that starts with `crate`,
/// `super` or `self`, as segments.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if starts_word(code, i, "use") {
            let end = code[i..].find(';').map(|e| i + e).unwrap_or(code.len());
            expand_use_tree(&code[i + 3..end], &mut Vec::new(), &mut paths);
            i = end;
            continue;
        }
        let inline = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| starts_word(code, i, p));
        if inline.is_some() {
            let end = code[i..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map(|e| i + e)
                .unwrap_or(code.len());
            paths.push(
                code[i..end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
            i = end;
            continue;
        }
        i += 1;
    }
    paths
}

fn starts_word(code: &str, at: usize, word: &str) -> bool {
    let before_ok = at == 0
        || !code.as_bytes()[at - 1].is_ascii_alphanumeric()
            && code.as_bytes()[at - 1] != b'_'
            && code.as_bytes()[at - 1] != b':';
    let after = at + word.len();
    let after_ok = word.ends_with(':')
        || code
            .as_bytes()
            .get(after)
            .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_'));
    before_ok && code[at..].starts_with(word) && after_ok
}

/// `a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand_use_tree(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let close = tree.rfind('}').expect("balanced use tree");
        let base_len = prefix.len();
        prefix.extend(
            head.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        for item in split_top_level(&tree[open + 1..close]) {
            expand_use_tree(item, prefix, out);
        }
        prefix.truncate(base_len);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let mut full = prefix.clone();
        full.extend(
            path.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*")
                .map(str::to_string),
        );
        if full.last().is_some_and(|s| s == "self") {
            full.pop();
        }
        out.push(full);
    }
}

fn split_top_level(list: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// Comments, string and char literals blanked out, so that only code is read.
fn without_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], peek(&chars, i + 1)) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && peek(&chars, i + 1) == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && peek(&chars, i + 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            ('r', Some('#')) | ('r', Some('"'))
                if !is_ident_char(i.checked_sub(1).map(|p| chars[p])) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    out.push(chars[i]);
                    i += 1;
                    continue;
                }
                i += 2 + hashes;
                let closing: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                while i < chars.len()
                    && !chars[i..]
                        .iter()
                        .take(closing.len())
                        .copied()
                        .eq(closing.chars())
                {
                    i += 1;
                }
                i += closing.len();
                out.push_str("\"\"");
            }
            ('"', _) => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            ('\'', next) if peek(&chars, i + 2) == Some('\'') || next == Some('\\') => {
                // A char literal ('x' or '\n'); a lifetime ('a) has no closing quote.
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn peek(chars: &[char], at: usize) -> Option<char> {
    chars.get(at).copied()
}

fn is_ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// `#[cfg(test)]` items (test modules and test-only helpers) removed by brace matching.
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let item_end = match (after.find('{'), after.find(';')) {
            (Some(open), semi) if semi.is_none_or(|s| open < s) => matching_brace(after, open) + 1,
            (_, Some(semi)) => semi + 1,
            _ => after.len(),
        };
        rest = &after[item_end..];
    }
    out.push_str(rest);
    out
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}
