//! `Server.ServerRedundancy` (OPC UA Part 5 §6.3.7, Part 4 §6.6.2): what a
//! redundancy-aware client reads to find the other servers of the set. The stack's core
//! address space has `RedundancySupport` only (as `ServerRedundancyType`); with warm or
//! hot redundancy configured the object becomes a `NonTransparentRedundancyType` with a
//! `ServerUriArray`: this connector's application URI first, then its peers'.

use crate::config::{OpcUaConfig, RedundancySupportKind};
use opcua::nodes::{ReferenceDirection, VariableBuilder};
use opcua::server::ServerHandle;
use opcua::server::node_manager::memory::CoreNodeManager;
use opcua::types::{
    DataTypeId, DataValue, NodeId, ObjectId, ObjectTypeId, RedundancySupport, ReferenceTypeId,
    VariableId, VariableTypeId, Variant,
};

/// The value of `RedundancySupport` for a configuration.
pub fn support_of(kind: RedundancySupportKind) -> RedundancySupport {
    match kind {
        RedundancySupportKind::None => RedundancySupport::None,
        RedundancySupportKind::Warm => RedundancySupport::Warm,
        RedundancySupportKind::Hot => RedundancySupport::Hot,
    }
}

/// `ServerUriArray`: own URI first, then the peers' (a peer equal to our own URI is a
/// configuration slip, not a second server: left out).
pub fn server_uris(config: &OpcUaConfig, own: &str) -> Vec<String> {
    std::iter::once(own.to_owned())
        .chain(
            config
                .redundancy
                .peers
                .iter()
                .filter(|p| *p != own)
                .cloned(),
        )
        .collect()
}

pub fn announce_redundancy(handle: &ServerHandle, config: &OpcUaConfig, own_uri: &str) {
    let Some(core) = handle.node_managers().get_of_type::<CoreNodeManager>() else {
        tracing::warn!("OPC UA: the core address space is missing; ServerRedundancy not announced");
        return;
    };
    let support = support_of(config.redundancy.support);
    let _ = core.set_value(
        handle.subscriptions(),
        &VariableId::Server_ServerRedundancy_RedundancySupport.into(),
        None,
        DataValue::new_now(support as i32),
    );
    if support == RedundancySupport::None {
        return;
    }
    let redundancy: NodeId = ObjectId::Server_ServerRedundancy.into();
    let uris = Variant::from((
        opcua::types::VariantScalarTypeId::String,
        server_uris(config, own_uri),
    ));
    let mut space = core.address_space().write();
    space.delete_reference(
        &redundancy,
        &NodeId::from(ObjectTypeId::ServerRedundancyType),
        &NodeId::from(ReferenceTypeId::HasTypeDefinition),
    );
    space.insert_reference(
        &redundancy,
        &ObjectTypeId::NonTransparentRedundancyType.into(),
        ReferenceTypeId::HasTypeDefinition,
    );
    let array: NodeId = VariableId::Server_ServerRedundancy_ServerUriArray.into();
    if space.node_exists(&array) {
        // The stack's node set carries the node (unreferenced): give it our value and
        // hang it under ServerRedundancy.
        if let Some(opcua::nodes::NodeType::Variable(v)) = space.find_mut(&array) {
            v.set_data_value(DataValue::new_now(uris));
        }
        if !space.has_reference(&redundancy, &array, ReferenceTypeId::HasProperty) {
            space.insert_reference(&redundancy, &array, ReferenceTypeId::HasProperty);
        }
    } else {
        VariableBuilder::new(&array, "ServerUriArray", "ServerUriArray")
            .data_type(DataTypeId::String)
            .value_rank(1)
            .array_dimensions(&[0])
            .value(uris)
            .has_type_definition(VariableTypeId::PropertyType)
            .reference(
                redundancy,
                ReferenceTypeId::HasProperty,
                ReferenceDirection::Inverse,
            )
            .insert(&mut *space);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OpcUaRedundancy;

    #[test]
    fn the_server_uri_array_lists_this_connector_first_then_its_peers_once() {
        let config = OpcUaConfig {
            redundancy: OpcUaRedundancy {
                support: RedundancySupportKind::Warm,
                peers: vec!["urn:b".into(), "urn:a".into(), "urn:c".into()],
            },
            ..OpcUaConfig::default()
        };
        assert_eq!(server_uris(&config, "urn:a"), ["urn:a", "urn:b", "urn:c"]);
        assert_eq!(
            support_of(RedundancySupportKind::Hot),
            RedundancySupport::Hot
        );
        assert_eq!(server_uris(&OpcUaConfig::default(), "urn:a"), ["urn:a"]);
    }
}
