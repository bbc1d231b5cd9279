//! Specs shared by the unit tests of the state machine and of the object builders.

use listacompra_crds::ListaCompraReleaseSpec;
use serde_json::json;

/// A valid release of `version` needing schema 4, with a 600 s deadline and a health gate of
/// two checks.
pub fn spec(version: &str) -> ListaCompraReleaseSpec {
    serde_json::from_value(json!({
        "version": version,
        "image": { "repository": "reg/api" },
        "env": {
            "databaseUrl": { "name": "db", "key": "url" },
            "redisUrl": { "name": "r", "key": "url" },
            "rabbitmqUrl": { "name": "q", "key": "url" },
            "jwtSecret": { "name": "j", "key": "s" }
        },
        "migrations": { "schemaVersion": 4 },
        "health": { "successThreshold": 2, "failureThreshold": 2, "intervalSeconds": 5, "timeoutSeconds": 1 },
        "progressDeadlineSeconds": 600
    }))
    .expect("valid spec")
}
