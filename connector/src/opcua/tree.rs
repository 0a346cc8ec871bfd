//! The site's tags as an OPC UA tree (docs/opcua.md "Address space"), computed from the
//! register map: folders follow each tag's dotted name (`Feeder03` → `Meter2` → `kW`).
//!
//! Sans-IO and compact: the tree holds indices into the map (whose name table holds the
//! strings), so a million tags cost a few bytes each, and no node object exists per tag.
//! String identifiers, identical on every connector of a site:
//! - a tag: its name (`Feeder03.Meter2.kW`);
//! - a folder: its dotted path and a `/` (`Feeder03.Meter2/`), the root folder `/`;
//! - a tag's `EngineeringUnits` property: the tag's name and `#EngineeringUnits`.

use crate::map::RegisterMap;
use std::collections::HashMap;

/// The browse name of the root folder under `Objects`.
pub const ROOT_NAME: &str = "Tags";
/// Suffix of a property node's identifier.
pub const EU_SUFFIX: &str = "#EngineeringUnits";

/// What an identifier in the tags namespace names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeNode {
    /// A folder (0 is the root).
    Folder(u32),
    /// A tag's variable: the point's index in the map.
    Tag(u32),
    /// A tag's `EngineeringUnits` property.
    Units(u32),
}

#[derive(Debug)]
struct Folder {
    /// Dotted path (empty for the root).
    path: Box<str>,
    parent: u32,
    folders: Vec<u32>,
    points: Vec<u32>,
}

#[derive(Debug)]
pub struct TagTree {
    folders: Vec<Folder>,
    by_path: HashMap<Box<str>, u32>,
    /// Every point, sorted by name: the identifier → point lookup.
    sorted: Vec<u32>,
    /// Per point: its folder.
    parent: Vec<u32>,
}

impl TagTree {
    pub fn build(map: &RegisterMap) -> TagTree {
        let n = map.points().len() as u32;
        let mut tree = TagTree {
            folders: vec![Folder {
                path: "".into(),
                parent: 0,
                folders: vec![],
                points: vec![],
            }],
            by_path: HashMap::new(),
            sorted: (0..n).collect(),
            parent: vec![0; n as usize],
        };
        tree.sorted.sort_by(|&a, &b| map.name(a).cmp(map.name(b)));
        // In name order, so every folder lists its children sorted.
        for i in 0..tree.sorted.len() {
            let p = tree.sorted[i];
            let name = map.name(p);
            let folder = match name.rsplit_once('.') {
                Some((dir, _)) => tree.folder_for(dir),
                None => 0,
            };
            tree.folders[folder as usize].points.push(p);
            tree.parent[p as usize] = folder;
        }
        tree
    }

    fn folder_for(&mut self, path: &str) -> u32 {
        if let Some(&f) = self.by_path.get(path) {
            return f;
        }
        let parent = match path.rsplit_once('.') {
            Some((dir, _)) => self.folder_for(dir),
            None => 0,
        };
        let f = self.folders.len() as u32;
        self.folders.push(Folder {
            path: path.into(),
            parent,
            folders: vec![],
            points: vec![],
        });
        self.folders[parent as usize].folders.push(f);
        self.by_path.insert(path.into(), f);
        f
    }

    /// What `id` (a string identifier in the tags namespace) names, if anything.
    pub fn resolve(&self, map: &RegisterMap, id: &str) -> Option<TreeNode> {
        if id == "/" {
            return Some(TreeNode::Folder(0));
        }
        if let Some(path) = id.strip_suffix('/') {
            return self.by_path.get(path).map(|&f| TreeNode::Folder(f));
        }
        if let Some(tag) = id.strip_suffix(EU_SUFFIX) {
            return self
                .point_named(map, tag)
                .filter(|&p| !map.unit(p).is_empty())
                .map(TreeNode::Units);
        }
        self.point_named(map, id).map(TreeNode::Tag)
    }

    fn point_named(&self, map: &RegisterMap, name: &str) -> Option<u32> {
        self.sorted
            .binary_search_by(|&p| map.name(p).cmp(name))
            .ok()
            .map(|i| self.sorted[i])
    }

    /// The identifier of a node.
    pub fn id(&self, map: &RegisterMap, node: TreeNode) -> String {
        match node {
            TreeNode::Folder(0) => "/".into(),
            TreeNode::Folder(f) => format!("{}/", self.folders[f as usize].path),
            TreeNode::Tag(p) => map.name(p).to_string(),
            TreeNode::Units(p) => format!("{}{EU_SUFFIX}", map.name(p)),
        }
    }

    /// The browse name (the last segment; the root is [`ROOT_NAME`]).
    pub fn browse_name<'a>(&'a self, map: &'a RegisterMap, node: TreeNode) -> &'a str {
        let last = |s: &'a str| s.rsplit_once('.').map_or(s, |(_, l)| l);
        match node {
            TreeNode::Folder(0) => ROOT_NAME,
            TreeNode::Folder(f) => last(&self.folders[f as usize].path),
            TreeNode::Tag(p) => last(map.name(p)),
            TreeNode::Units(_) => "EngineeringUnits",
        }
    }

    /// The node's parent (the root has none).
    pub fn parent(&self, node: TreeNode) -> Option<TreeNode> {
        match node {
            TreeNode::Folder(0) => None,
            TreeNode::Folder(f) => Some(TreeNode::Folder(self.folders[f as usize].parent)),
            TreeNode::Tag(p) => Some(TreeNode::Folder(self.parent[p as usize])),
            TreeNode::Units(p) => Some(TreeNode::Tag(p)),
        }
    }

    /// A folder's children: subfolders, then tags, each in name order.
    pub fn children(&self, folder: u32) -> impl Iterator<Item = TreeNode> + '_ {
        let f = &self.folders[folder as usize];
        f.folders
            .iter()
            .map(|&c| TreeNode::Folder(c))
            .chain(f.points.iter().map(|&p| TreeNode::Tag(p)))
    }

    pub fn folder_count(&self) -> usize {
        self.folders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MapConfig, ModbusConfig};
    use po_protocol::{TagId, TagInfo, TagKind};

    fn map(names: &[(&str, &str)]) -> RegisterMap {
        let catalog: Vec<TagInfo> = names
            .iter()
            .enumerate()
            .map(|(i, (n, u))| TagInfo {
                id: TagId(i as u32),
                name: n.to_string(),
                unit: u.to_string(),
                kind: TagKind::Analog,
                writable: false,
            })
            .collect();
        RegisterMap::build(&catalog, &ModbusConfig::default(), &MapConfig::default()).expect("maps")
    }

    #[test]
    fn folders_follow_dotted_names_and_every_id_resolves_back() {
        let m = map(&[
            ("Feeder03.Meter2.kW", "kW"),
            ("Feeder03.Meter2.PF", ""),
            ("Feeder03.Meter1.kW", "kW"),
            ("Feeder01.Meter1.kW", "kW"),
        ]);
        let t = TagTree::build(&m);
        let root: Vec<_> = t
            .children(0)
            .map(|n| t.browse_name(&m, n).to_string())
            .collect();
        assert_eq!(root, ["Feeder01", "Feeder03"]);
        let Some(TreeNode::Folder(f)) = t.resolve(&m, "Feeder03.Meter2/") else {
            panic!("folder resolves");
        };
        let names: Vec<_> = t.children(f).map(|n| t.id(&m, n)).collect();
        assert_eq!(names, ["Feeder03.Meter2.PF", "Feeder03.Meter2.kW"]);
        // Every node's id resolves to the node, and its parent chain ends at the root.
        let mut stack = vec![TreeNode::Folder(0)];
        let mut seen = 0;
        while let Some(n) = stack.pop() {
            seen += 1;
            assert_eq!(t.resolve(&m, &t.id(&m, n)), Some(n));
            if let TreeNode::Folder(f) = n {
                for c in t.children(f) {
                    assert_eq!(t.parent(c), Some(n));
                    stack.push(c);
                }
            }
        }
        assert_eq!(seen, 1 + 5 + 4, "root, five folders, four tags");
        assert_eq!(t.folder_count(), 6);
    }

    #[test]
    fn units_exist_only_for_tags_that_have_one_and_unknown_ids_resolve_to_nothing() {
        let m = map(&[("A.kW", "kW"), ("A.PF", "")]);
        let t = TagTree::build(&m);
        let kw = (0..m.points().len() as u32)
            .find(|&p| m.name(p) == "A.kW")
            .unwrap();
        assert_eq!(
            t.resolve(&m, "A.kW#EngineeringUnits"),
            Some(TreeNode::Units(kw))
        );
        assert_eq!(t.resolve(&m, "A.PF#EngineeringUnits"), None);
        assert_eq!(t.resolve(&m, "A.nope"), None);
        assert_eq!(t.resolve(&m, "B/"), None);
        assert_eq!(t.resolve(&m, "/"), Some(TreeNode::Folder(0)));
    }
}
