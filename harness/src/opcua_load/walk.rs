//! Which nodes `harness load --protocol opcua` subscribes to, decided without IO: a
//! breadth-first walk down from `Objects` (the `Server` object skipped) that descends into
//! Objects and collects Variables, and each session's share of what it found.

use opcua::types::{Identifier, NodeClass, NodeId, ObjectId};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// The breadth-first walk. The driver asks for the next nodes to browse, browses them and
/// hands back each node's forward hierarchical references; the walk says when it is done.
#[derive(Debug)]
pub struct BrowseWalk {
    queue: VecDeque<NodeId>,
    seen: HashSet<NodeId>,
    variables: Vec<NodeId>,
    limit: usize,
    /// Only Variables whose string identifier is one of these count (`harness load
    /// --tags`); `None`: every Variable.
    only: Option<Arc<HashSet<String>>>,
}

impl BrowseWalk {
    /// A walk that stops once `limit` variables are found.
    pub fn new(limit: usize) -> BrowseWalk {
        let objects: NodeId = ObjectId::ObjectsFolder.into();
        BrowseWalk {
            queue: VecDeque::from([objects.clone()]),
            seen: HashSet::from([objects]),
            variables: Vec::new(),
            limit,
            only: None,
        }
    }

    /// Counts only the Variables whose string identifier is in `names` (a connector's
    /// tag names); Objects are walked all the same.
    pub fn only(mut self, names: Arc<HashSet<String>>) -> BrowseWalk {
        self.only = Some(names);
        self
    }

    fn wanted(&self, node: &NodeId) -> bool {
        match (&self.only, &node.identifier) {
            (None, _) => true,
            (Some(names), Identifier::String(s)) => names.contains(s.as_ref()),
            (Some(_), _) => false,
        }
    }

    /// Up to `max` nodes to browse next; empty when the walk is done.
    pub fn poll_nodes(&mut self, max: usize) -> Vec<NodeId> {
        if self.is_done() {
            return Vec::new();
        }
        let n = max.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    /// References found below a browsed node: `(target, its node class, whether the
    /// target is on this server)`.
    pub fn handle_references(&mut self, refs: impl IntoIterator<Item = (NodeId, NodeClass, bool)>) {
        let server: NodeId = ObjectId::Server.into();
        for (node, class, local) in refs {
            // A node on another server cannot be monitored through this session.
            if !local || node == server || !self.seen.insert(node.clone()) {
                continue;
            }
            match class {
                NodeClass::Object => self.queue.push_back(node),
                // A variable's own children (properties such as EngineeringUnits) are not
                // what is measured: the walk does not descend into variables.
                NodeClass::Variable if self.variables.len() < self.limit && self.wanted(&node) => {
                    self.variables.push(node)
                }
                _ => {}
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.queue.is_empty() || self.variables.len() >= self.limit
    }

    /// The variables found, in walk order.
    pub fn variables(&self) -> &[NodeId] {
        &self.variables
    }

    pub fn into_variables(self) -> Vec<NodeId> {
        self.variables
    }
}

/// Session `session`'s `items` variables: consecutive windows of the list, wrapping
/// around, so the sessions' items are disjoint when the server has enough variables for
/// all of them and shared otherwise. `None` when fewer than `items` were found.
pub fn session_items(found: &[NodeId], session: usize, items: usize) -> Option<Vec<NodeId>> {
    if found.len() < items || found.is_empty() {
        return None;
    }
    let start = session * items % found.len();
    Some(
        found
            .iter()
            .cycle()
            .skip(start)
            .take(items)
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(id: &str) -> NodeId {
        NodeId::new(2, id)
    }

    #[test]
    fn the_walk_descends_objects_collects_variables_and_skips_the_server() {
        let mut w = BrowseWalk::new(10);
        assert_eq!(
            w.poll_nodes(100),
            vec![NodeId::from(ObjectId::ObjectsFolder)]
        );
        w.handle_references([
            (ObjectId::Server.into(), NodeClass::Object, true),
            (s("Tags"), NodeClass::Object, true),
            (s("remote"), NodeClass::Object, false),
            (s("top"), NodeClass::Variable, true),
            (s("method"), NodeClass::Method, true),
        ]);
        assert_eq!(w.variables(), [s("top")]);
        assert_eq!(w.poll_nodes(100), vec![s("Tags")]);
        // A reference back up (a cycle) and a duplicate are not walked twice.
        w.handle_references([
            (ObjectId::ObjectsFolder.into(), NodeClass::Object, true),
            (s("a"), NodeClass::Variable, true),
            (s("a"), NodeClass::Variable, true),
            (s("top"), NodeClass::Variable, true),
        ]);
        assert_eq!(w.variables(), [s("top"), s("a")]);
        assert!(w.is_done());
        assert!(w.poll_nodes(100).is_empty());
    }

    #[test]
    fn the_walk_stops_at_its_limit() {
        let mut w = BrowseWalk::new(2);
        w.poll_nodes(1);
        w.handle_references([
            (s("x"), NodeClass::Variable, true),
            (s("f"), NodeClass::Object, true),
            (s("y"), NodeClass::Variable, true),
            (s("z"), NodeClass::Variable, true),
        ]);
        assert!(w.is_done());
        assert_eq!(w.into_variables(), [s("x"), s("y")]);
    }

    #[test]
    fn a_name_list_keeps_only_the_variables_it_names() {
        let names = Arc::new(HashSet::from(["a".to_string(), "c".to_string()]));
        let mut w = BrowseWalk::new(10).only(names);
        w.poll_nodes(1);
        w.handle_references([
            (s("a"), NodeClass::Variable, true),
            (s("b"), NodeClass::Variable, true),
            (NodeId::new(2, 7u32), NodeClass::Variable, true),
            // Objects are walked whatever their name.
            (s("folder"), NodeClass::Object, true),
        ]);
        assert_eq!(w.variables(), [s("a")]);
        assert_eq!(w.poll_nodes(10), vec![s("folder")]);
        w.handle_references([(s("c"), NodeClass::Variable, true)]);
        assert_eq!(w.into_variables(), [s("a"), s("c")]);
    }

    proptest! {
        #[test]
        fn sessions_get_their_items_disjoint_when_there_are_enough(
            found in 0usize..300, sessions in 1usize..6, items in 1usize..80,
        ) {
            let nodes: Vec<NodeId> = (0..found as u32).map(|i| NodeId::new(2, i)).collect();
            let mut all = HashSet::new();
            for session in 0..sessions {
                match session_items(&nodes, session, items) {
                    None => prop_assert!(found < items),
                    Some(v) => {
                        prop_assert_eq!(v.len(), items);
                        let distinct: HashSet<_> = v.iter().collect();
                        prop_assert_eq!(distinct.len(), items);
                        all.extend(v);
                    }
                }
            }
            if found >= sessions * items {
                prop_assert_eq!(all.len(), sessions * items);
            }
        }
    }
}
