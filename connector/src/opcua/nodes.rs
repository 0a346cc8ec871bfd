//! The node manager of the tags namespace: browse, read, write and monitored items,
//! answered from the point image and the [`TagTree`] (docs/opcua.md "Address space").
//! No node object exists per tag and no value is copied into one: a read reads the image,
//! a monitored item registers interest in the image's change feed.

use super::auth::Access;
use super::tree::{TagTree, TreeNode};
use super::values::{data_type_of, data_value, eu_information, status_of, value_from_variant};
use crate::authz::Operation;
use crate::engine::{WriteReply, WriteRequest};
use crate::image::RegisterImage;
use crate::image_slot::ImageSlot;
use crate::lifecycle::Lifecycle;
use crate::map::RegisterMap;
use async_trait::async_trait;
use opcua::nodes::{AccessLevel, DefaultTypeTree};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::{
    AddReferenceResult, BrowseNode, BrowsePathItem, ExternalReferenceRequest, MonitoredItemRef,
    NodeManager, NodeMetadata, ReadNode, RequestContext, ServerContext, WriteNode,
    impl_translate_browse_paths_using_browse,
};
use opcua::server::{CreateMonitoredItem, MonitoredItemHandle};
use opcua::types::{
    AttributeId, BrowseDirection, DataTypeId, DataValue, ExpandedNodeId, ExtensionObject,
    Identifier, LocalizedText, NodeClass, NodeId, NumericRange, ObjectId, ObjectTypeId,
    QualifiedName, ReferenceDescription, ReferenceTypeId, StatusCode, TimestampsToReturn,
    VariableTypeId, Variant,
};
use po_protocol::{TagKind, WriteOutcome};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the node manager needs from the rest of the connector.
#[derive(Debug)]
pub struct TagNodesConfig {
    pub namespace_uri: String,
    pub images: Arc<ImageSlot>,
    pub access: Arc<Access>,
    pub writes: mpsc::Sender<WriteRequest>,
    pub lifecycle: Arc<Lifecycle>,
    pub write_timeout: Duration,
    pub stale_after: Duration,
    pub sessions: Arc<super::sessions::SessionRegistry>,
}

pub struct TagNodes {
    config: TagNodesConfig,
    /// The namespace index, known once the server registered the namespace.
    ns: u16,
    /// The tree of the image being served, built on first use (keyed by its map).
    tree: Mutex<Option<(usize, Arc<TagTree>)>>,
    /// Monitored items on tag values: the point each watches in which image, to take
    /// the interest back when the item goes.
    watched: Mutex<HashMap<MonitoredItemHandle, (Arc<RegisterImage>, u32)>>,
}

impl std::fmt::Debug for TagNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagNodes")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

/// A browse that did not fit in one answer.
#[derive(Default)]
struct Remaining {
    refs: VecDeque<ReferenceDescription>,
}

impl TagNodes {
    pub fn new(config: TagNodesConfig, context: &ServerContext) -> TagNodes {
        let ns = context
            .type_tree
            .write()
            .namespaces_mut()
            .add_namespace(&config.namespace_uri);
        TagNodes {
            config,
            ns,
            tree: Mutex::new(None),
            watched: Mutex::new(HashMap::new()),
        }
    }

    pub fn namespace_index(&self) -> u16 {
        self.ns
    }

    /// The image served now and its tree.
    pub fn view(&self) -> (Arc<RegisterImage>, Arc<TagTree>) {
        let image = self.config.images.current().clone();
        let key = Arc::as_ptr(image.map()) as usize;
        let mut cached = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, t)) = cached.as_ref()
            && *k == key
        {
            return (image, t.clone());
        }
        let tree = Arc::new(TagTree::build(image.map()));
        *cached = Some((key, tree.clone()));
        (image, tree)
    }

    fn node_id(&self, tree: &TagTree, map: &RegisterMap, node: TreeNode) -> NodeId {
        NodeId::new(self.ns, tree.id(map, node))
    }

    fn resolve(&self, tree: &TagTree, map: &RegisterMap, id: &NodeId) -> Option<TreeNode> {
        if id.namespace != self.ns {
            return None;
        }
        match &id.identifier {
            Identifier::String(s) => tree.resolve(map, s.as_ref()),
            _ => None,
        }
    }

    fn metadata(&self, tree: &TagTree, map: &RegisterMap, node: TreeNode) -> NodeMetadata {
        let name = tree.browse_name(map, node);
        let (class, type_def): (NodeClass, NodeId) = match node {
            TreeNode::Folder(_) => (NodeClass::Object, ObjectTypeId::FolderType.into()),
            TreeNode::Tag(p) => (
                NodeClass::Variable,
                match map.point(p).kind {
                    TagKind::Analog => VariableTypeId::AnalogItemType.into(),
                    _ => VariableTypeId::BaseDataVariableType.into(),
                },
            ),
            TreeNode::Units(_) => (NodeClass::Variable, VariableTypeId::PropertyType.into()),
        };
        let browse_ns = if matches!(node, TreeNode::Units(_)) {
            0
        } else {
            self.ns
        };
        NodeMetadata {
            node_id: self.node_id(tree, map, node).into(),
            type_definition: type_def.into(),
            browse_name: QualifiedName::new(browse_ns, name),
            display_name: LocalizedText::new("", name),
            node_class: class,
        }
    }

    /// Every reference of `node` (before the browse's own filters).
    fn references(
        &self,
        tree: &TagTree,
        map: &RegisterMap,
        node: TreeNode,
        out: &mut Vec<ReferenceDescription>,
    ) {
        let hierarchical = |n: TreeNode| match n {
            TreeNode::Units(_) => ReferenceTypeId::HasProperty,
            _ => ReferenceTypeId::Organizes,
        };
        // Forward: children, properties, type definition.
        match node {
            TreeNode::Folder(f) => {
                for c in tree.children(f) {
                    out.push(
                        self.metadata(tree, map, c)
                            .into_ref_desc(true, ReferenceTypeId::Organizes),
                    );
                }
            }
            TreeNode::Tag(p) => {
                if !map.unit(p).is_empty() {
                    out.push(
                        self.metadata(tree, map, TreeNode::Units(p))
                            .into_ref_desc(true, ReferenceTypeId::HasProperty),
                    );
                }
            }
            TreeNode::Units(_) => {}
        }
        let meta = self.metadata(tree, map, node);
        out.push(ReferenceDescription {
            reference_type_id: ReferenceTypeId::HasTypeDefinition.into(),
            is_forward: true,
            node_id: meta.type_definition.clone(),
            browse_name: QualifiedName::null(),
            display_name: LocalizedText::null(),
            node_class: match node {
                TreeNode::Folder(_) => NodeClass::ObjectType,
                _ => NodeClass::VariableType,
            },
            type_definition: ExpandedNodeId::null(),
        });
        // Inverse: the parent (the root's is Objects).
        match tree.parent(node) {
            Some(parent) => out.push(
                self.metadata(tree, map, parent)
                    .into_ref_desc(false, hierarchical(node)),
            ),
            None => out.push(ReferenceDescription {
                reference_type_id: ReferenceTypeId::Organizes.into(),
                is_forward: false,
                node_id: NodeId::from(ObjectId::ObjectsFolder).into(),
                browse_name: QualifiedName::new(0, "Objects"),
                display_name: LocalizedText::new("", "Objects"),
                node_class: NodeClass::Object,
                type_definition: NodeId::from(ObjectTypeId::FolderType).into(),
            }),
        }
    }

    fn add_all(
        node: &mut BrowseNode,
        type_tree: &DefaultTypeTree,
        refs: Vec<ReferenceDescription>,
    ) {
        let mut rest = Remaining::default();
        for r in refs {
            if let AddReferenceResult::Full(r) = node.add(type_tree, r) {
                rest.refs.push_back(r);
            }
        }
        if !rest.refs.is_empty() {
            node.set_next_continuation_point(Box::new(rest));
        }
    }

    fn read_one(
        &self,
        tree: &TagTree,
        image: &RegisterImage,
        context: &RequestContext,
        node: TreeNode,
        attribute: AttributeId,
    ) -> Result<DataValue, StatusCode> {
        let map = image.map();
        let meta = self.metadata(tree, map, node);
        let constant = |v: Variant| Ok(DataValue::new_now(v));
        match attribute {
            AttributeId::NodeId => constant(self.node_id(tree, map, node).into()),
            AttributeId::NodeClass => constant((meta.node_class as i32).into()),
            AttributeId::BrowseName => constant(meta.browse_name.into()),
            AttributeId::DisplayName => constant(meta.display_name.into()),
            AttributeId::Description => constant(LocalizedText::new("", "").into()),
            AttributeId::WriteMask | AttributeId::UserWriteMask => constant(0u32.into()),
            AttributeId::EventNotifier if matches!(node, TreeNode::Folder(_)) => {
                constant(0u8.into())
            }
            _ => match node {
                TreeNode::Folder(_) => Err(StatusCode::BadAttributeIdInvalid),
                TreeNode::Tag(p) => self.read_tag(image, context, p, attribute),
                TreeNode::Units(p) => match attribute {
                    AttributeId::Value => {
                        constant(ExtensionObject::from_message(eu_information(map.unit(p))).into())
                    }
                    AttributeId::DataType => {
                        constant(NodeId::from(DataTypeId::EUInformation).into())
                    }
                    AttributeId::ValueRank => constant((-1i32).into()),
                    AttributeId::ArrayDimensions => constant(Variant::Empty),
                    AttributeId::AccessLevel | AttributeId::UserAccessLevel => {
                        constant(AccessLevel::CURRENT_READ.bits().into())
                    }
                    AttributeId::MinimumSamplingInterval => constant((-1.0f64).into()),
                    AttributeId::Historizing => constant(false.into()),
                    _ => Err(StatusCode::BadAttributeIdInvalid),
                },
            },
        }
    }

    fn read_tag(
        &self,
        image: &RegisterImage,
        context: &RequestContext,
        p: u32,
        attribute: AttributeId,
    ) -> Result<DataValue, StatusCode> {
        let map = image.map();
        let point = map.point(p);
        let constant = |v: Variant| Ok(DataValue::new_now(v));
        let rights = self.config.access.rights(context.user_token());
        let access = |user: bool| {
            let mut a = AccessLevel::CURRENT_READ;
            if point.writable {
                a |= AccessLevel::CURRENT_WRITE;
            }
            if user {
                let name = map.name(p);
                if !rights.permits_tag(Operation::Read, name) {
                    a.remove(AccessLevel::CURRENT_READ);
                }
                if !rights.permits_tag(Operation::Write, name) {
                    a.remove(AccessLevel::CURRENT_WRITE);
                }
            }
            a
        };
        match attribute {
            AttributeId::Value => {
                if !rights.permits_tag(Operation::Read, map.name(p)) {
                    return Err(StatusCode::BadUserAccessDenied);
                }
                Ok(self.value_of(image, p))
            }
            AttributeId::DataType => constant(NodeId::from(data_type_of(point.kind)).into()),
            AttributeId::ValueRank => constant((-1i32).into()),
            AttributeId::ArrayDimensions => constant(Variant::Empty),
            AttributeId::AccessLevel => constant(access(false).bits().into()),
            AttributeId::UserAccessLevel => constant(access(true).bits().into()),
            AttributeId::AccessLevelEx => constant(u32::from(access(false).bits()).into()),
            // Every change the connector ingests is reported.
            AttributeId::MinimumSamplingInterval => constant(0.0f64.into()),
            AttributeId::Historizing => constant(false.into()),
            _ => Err(StatusCode::BadAttributeIdInvalid),
        }
    }

    /// A point's value as a client reads or is notified of it.
    pub fn value_of(&self, image: &RegisterImage, p: u32) -> DataValue {
        let v = image.point_value(p);
        let now = image.clock().wall().0;
        data_value(
            &v,
            status_of(
                v.quality,
                image.stale_since_us(),
                now,
                self.config.stale_after,
            ),
        )
    }

    /// The identifier of point `p` in the image served now.
    pub fn tag_node_id(&self, image: &RegisterImage, tree: &TagTree, p: u32) -> NodeId {
        self.node_id(tree, image.map(), TreeNode::Tag(p))
    }

    fn write_refusal(outcome: WriteOutcome) -> StatusCode {
        match outcome {
            WriteOutcome::Applied => StatusCode::Good,
            WriteOutcome::NotPrimary => StatusCode::BadNoCommunication,
            WriteOutcome::UnknownTag => StatusCode::BadNodeIdUnknown,
            WriteOutcome::ReadOnly => StatusCode::BadNotWritable,
            WriteOutcome::TypeMismatch => StatusCode::BadTypeMismatch,
        }
    }
}

#[async_trait]
impl NodeManager for TagNodes {
    fn owns_node(&self, id: &NodeId) -> bool {
        id.namespace == self.ns
    }

    fn name(&self) -> &str {
        "tags"
    }

    fn namespaces_for_user(&self, _context: &RequestContext) -> Vec<NamespaceMetadata> {
        vec![NamespaceMetadata {
            namespace_uri: self.config.namespace_uri.clone(),
            is_namespace_subset: Some(false),
            static_node_id_types: Some(vec![opcua::types::IdType::String]),
            namespace_index: self.ns,
            ..Default::default()
        }]
    }

    async fn init(&self, _type_tree: &mut DefaultTypeTree, _context: ServerContext) {}

    async fn resolve_external_references(
        &self,
        _context: &RequestContext,
        items: &mut [&mut ExternalReferenceRequest],
    ) {
        let (image, tree) = self.view();
        for req in items {
            if let Some(node) = self.resolve(&tree, image.map(), req.node_id()) {
                req.set(self.metadata(&tree, image.map(), node));
            }
        }
    }

    async fn browse(
        &self,
        context: &RequestContext,
        nodes_to_browse: &mut [BrowseNode],
    ) -> Result<(), StatusCode> {
        self.config.sessions.handle_request(context);
        let (image, tree) = self.view();
        let map = image.map();
        let type_tree = context.type_tree.read();
        for node in nodes_to_browse {
            if let Some(mut rest) = node.take_continuation_point::<Remaining>() {
                while node.remaining() > 0 {
                    let Some(r) = rest.refs.pop_front() else {
                        break;
                    };
                    node.add_unchecked(r);
                }
                if !rest.refs.is_empty() {
                    node.set_next_continuation_point(rest);
                }
                continue;
            }
            // Our root folder hangs under Objects.
            if node.node_id() == &NodeId::from(ObjectId::ObjectsFolder) {
                if matches!(
                    node.browse_direction(),
                    BrowseDirection::Forward | BrowseDirection::Both
                ) {
                    let r = self
                        .metadata(&tree, map, TreeNode::Folder(0))
                        .into_ref_desc(true, ReferenceTypeId::Organizes);
                    Self::add_all(node, &type_tree, vec![r]);
                }
                continue;
            }
            if node.node_id().namespace != self.ns {
                continue;
            }
            let Some(n) = self.resolve(&tree, map, node.node_id()) else {
                node.set_status(StatusCode::BadNodeIdUnknown);
                continue;
            };
            let mut refs = Vec::new();
            self.references(&tree, map, n, &mut refs);
            Self::add_all(node, &type_tree, refs);
        }
        Ok(())
    }

    async fn read(
        &self,
        context: &RequestContext,
        _max_age: f64,
        timestamps_to_return: TimestampsToReturn,
        nodes_to_read: &mut [&mut ReadNode],
    ) -> Result<(), StatusCode> {
        self.config.sessions.handle_request(context);
        let (image, tree) = self.view();
        for node in nodes_to_read {
            let Some(n) = self.resolve(&tree, image.map(), &node.node().node_id) else {
                node.set_error(StatusCode::BadNodeIdUnknown);
                continue;
            };
            if !matches!(node.node().index_range, NumericRange::None) {
                node.set_error(StatusCode::BadIndexRangeNoData);
                continue;
            }
            match self.read_one(&tree, &image, context, n, node.node().attribute_id) {
                Ok(mut dv) => {
                    strip_timestamps(&mut dv, timestamps_to_return);
                    node.set_result(dv)
                }
                Err(e) => node.set_error(e),
            }
        }
        Ok(())
    }

    async fn write(
        &self,
        context: &RequestContext,
        nodes_to_write: &mut [&mut WriteNode],
    ) -> Result<(), StatusCode> {
        self.config.sessions.handle_request(context);
        let (image, tree) = self.view();
        let map = image.map();
        let rights = self.config.access.rights(context.user_token());
        // Counted by the drain like every Modbus write (docs/service.md).
        let _answering = self.config.lifecycle.write();
        let deadline = image.clock().now() + self.config.write_timeout;
        let mut waiting = Vec::new();
        for (i, node) in nodes_to_write.iter_mut().enumerate() {
            let w = node.value();
            let Some(n) = self.resolve(&tree, map, &w.node_id) else {
                node.set_status(StatusCode::BadNodeIdUnknown);
                continue;
            };
            let TreeNode::Tag(p) = n else {
                node.set_status(StatusCode::BadNotWritable);
                continue;
            };
            if w.attribute_id != AttributeId::Value {
                node.set_status(StatusCode::BadNotWritable);
                continue;
            }
            if !matches!(w.index_range, NumericRange::None) {
                node.set_status(StatusCode::BadWriteNotSupported);
                continue;
            }
            let point = map.point(p);
            if !point.writable {
                node.set_status(StatusCode::BadNotWritable);
                continue;
            }
            if !rights.permits_tag(Operation::Write, map.name(p)) {
                tracing::info!(role = %rights.role, tag = map.name(p), "OPC UA write refused: the role may not write this tag");
                node.set_status(StatusCode::BadUserAccessDenied);
                continue;
            }
            // Only the value: a client's timestamps or status are not ours to write.
            if w.value.status.is_some_and(|s| !s.is_good()) {
                node.set_status(StatusCode::BadWriteNotSupported);
                continue;
            }
            let Some(v) = w.value.value.as_ref() else {
                node.set_status(StatusCode::BadTypeMismatch);
                continue;
            };
            let value = match value_from_variant(point.kind, v) {
                Ok(v) => v,
                Err(e) => {
                    node.set_status(e);
                    continue;
                }
            };
            let (reply, rx) = oneshot::channel();
            let req = WriteRequest {
                tag: point.tag,
                value,
                deadline,
                reply,
            };
            if self.config.writes.send(req).await.is_err() {
                node.set_status(StatusCode::BadServerHalted);
                continue;
            }
            waiting.push((i, rx));
        }
        for (i, rx) in waiting {
            let status = match rx.await {
                Ok(WriteReply::Applied) => StatusCode::Good,
                Ok(WriteReply::Refused(outcome)) => Self::write_refusal(outcome),
                Ok(WriteReply::TimedOut) => match image.active() {
                    Some((_, po_protocol::Role::Primary, _)) => StatusCode::BadTimeout,
                    _ => StatusCode::BadNoCommunication,
                },
                Err(_) => StatusCode::BadServerHalted,
            };
            nodes_to_write[i].set_status(status);
        }
        Ok(())
    }

    async fn translate_browse_paths_to_node_ids(
        &self,
        context: &RequestContext,
        nodes: &mut [&mut BrowsePathItem],
    ) -> Result<(), StatusCode> {
        impl_translate_browse_paths_using_browse(self, context, nodes).await
    }

    async fn create_monitored_items(
        &self,
        context: &RequestContext,
        items: &mut [&mut CreateMonitoredItem],
    ) -> Result<(), StatusCode> {
        self.config.sessions.handle_request(context);
        let (image, tree) = self.view();
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            let target = item.item_to_monitor().clone();
            let Some(n) = self.resolve(&tree, image.map(), &target.node_id) else {
                item.set_status(StatusCode::BadNodeIdUnknown);
                continue;
            };
            match self.read_one(&tree, &image, context, n, target.attribute_id) {
                Ok(mut dv) => {
                    strip_timestamps(&mut dv, item.timestamps_to_return());
                    item.set_initial_value(dv);
                    item.set_status(StatusCode::Good);
                }
                Err(e) => {
                    item.set_status(e);
                    continue;
                }
            }
            if let (TreeNode::Tag(p), AttributeId::Value) = (n, target.attribute_id)
                && let Some(feed) = image.feed()
            {
                feed.watch(p, 1);
                watched.insert(item.handle(), (image.clone(), p));
            }
        }
        Ok(())
    }

    async fn delete_monitored_items(&self, _context: &RequestContext, items: &[&MonitoredItemRef]) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            if let Some((image, p)) = watched.remove(&item.handle())
                && let Some(feed) = image.feed()
            {
                feed.watch(p, -1);
            }
        }
    }
}

fn strip_timestamps(dv: &mut DataValue, which: TimestampsToReturn) {
    match which {
        TimestampsToReturn::Source => dv.server_timestamp = None,
        TimestampsToReturn::Server => dv.source_timestamp = None,
        TimestampsToReturn::Neither => {
            dv.source_timestamp = None;
            dv.server_timestamp = None;
        }
        _ => {}
    }
}
