//! Events on the real API server: a repeat is one Event counting up (a series), an Event
//! with another note is another Event, so `kubectl get events` never shows an old message
//! for a new one ("releasing 1.1.0" for the release of 1.2.0).

use anyhow::ensure;
use e2e::cluster::with_namespace;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use listacompra_operator::events::{Note, Publisher};

#[tokio::test]
async fn repeats_count_up_and_new_notes_are_new_events() {
    with_namespace("events", |ctx| async move {
        let publisher = Publisher::new(ctx.client.clone(), "listacompra-operator", None);
        let note = |message: &str| Note {
            regarding: ObjectReference {
                api_version: Some("listacompra.app/v1alpha1".into()),
                kind: Some("ListaCompraRelease".into()),
                name: Some("lc".into()),
                namespace: Some(ctx.namespace.clone()),
                ..ObjectReference::default()
            },
            warning: false,
            reason: "ReleaseStarted".into(),
            message: message.into(),
            related: None,
        };
        publisher.publish(&note("releasing 1.1.0")).await?;
        publisher.publish(&note("releasing 1.1.0")).await?;
        publisher.publish(&note("releasing 1.2.0")).await?;

        let mut events: Vec<(String, i32)> = ctx
            .api::<Event>()
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ReleaseStarted"))
            .map(|e| (e.note.unwrap_or_default(), e.series.map_or(1, |s| s.count)))
            .collect();
        events.sort();
        ensure!(
            events
                == [
                    ("releasing 1.1.0".to_owned(), 2),
                    ("releasing 1.2.0".to_owned(), 1)
                ],
            "{events:?}"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
