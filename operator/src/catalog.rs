//! The agent catalog: which image runs each agent type. Helm values render it into a file the
//! operator reads; without one the built-in catalog applies.

use std::collections::BTreeMap;
use std::path::Path;

use prospector_crds::AgentType;
use serde::Deserialize;

use crate::error::OperatorError;

/// One catalog entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CatalogEntry {
    pub image: String,
}

/// Agent type → image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCatalog {
    entries: BTreeMap<String, CatalogEntry>,
}

const ALL_TYPES: [AgentType; 5] = [
    AgentType::LeadQualifier,
    AgentType::LeadResearcher,
    AgentType::OutreachWriter,
    AgentType::MeetingScheduler,
    AgentType::Custom,
];

impl Default for AgentCatalog {
    fn default() -> Self {
        let entries = ALL_TYPES
            .iter()
            .map(|t| {
                let image = format!("ghcr.io/prospector-dev/agent-{}:0.1.0", t.as_str().replace('_', "-"));
                (t.as_str().to_owned(), CatalogEntry { image })
            })
            .collect();
        Self { entries }
    }
}

impl AgentCatalog {
    /// Reads a YAML or JSON map `agent_type: {image: ...}`. Every agent type must be present.
    pub fn from_file(path: &Path) -> Result<Self, OperatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OperatorError::Config(format!("agent catalog {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| OperatorError::Config(format!("agent catalog {}: {e}", path.display())))
    }

    /// Parses a catalog document.
    pub fn parse(text: &str) -> Result<Self, String> {
        let entries: BTreeMap<String, CatalogEntry> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        for t in ALL_TYPES {
            if !entries.contains_key(t.as_str()) {
                return Err(format!("no image for agent type {}", t.as_str()));
            }
        }
        Ok(Self { entries })
    }

    /// The image for an agent: its own `spec.image`, else the catalog's.
    pub fn image_for<'a>(&'a self, agent_type: AgentType, override_image: Option<&'a str>) -> &'a str {
        override_image.unwrap_or_else(|| self.entries.get(agent_type.as_str()).map(|e| e.image.as_str()).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_covers_every_type() {
        let catalog = AgentCatalog::default();
        assert_eq!(
            catalog.image_for(AgentType::LeadQualifier, None),
            "ghcr.io/prospector-dev/agent-lead-qualifier:0.1.0"
        );
        assert_eq!(catalog.image_for(AgentType::Custom, Some("me/agent:1")), "me/agent:1");
    }

    #[test]
    fn a_catalog_file_must_name_every_type() {
        let full = "lead_qualifier: {image: a}\nlead_researcher: {image: b}\noutreach_writer: {image: c}\nmeeting_scheduler: {image: d}\ncustom: {image: e}\n";
        assert_eq!(AgentCatalog::parse(full).unwrap().image_for(AgentType::OutreachWriter, None), "c");
        let err = AgentCatalog::parse("lead_qualifier: {image: a}\n").unwrap_err();
        assert!(err.contains("lead_researcher"), "{err}");
    }
}
