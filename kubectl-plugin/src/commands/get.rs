//! `get RELEASE [-w] [-o json]`: the release as a tree.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use listacompra_crds::ListaCompraRelease;

use super::{Target, children_selector};
use crate::cli::Output;
use crate::error::Result;
use crate::tree::{self, Inputs, Node};

/// How often a terminal redraws without a change (elapsed times move).
const TICK: Duration = Duration::from_secs(1);

/// Prints the tree once, or, with `watch`, redraws it on every change of the release or its
/// children until interrupted.
pub async fn run(target: &Target, watch: bool, output: Output) -> Result<ExitCode> {
    let fancy = output == Output::Text
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    if !watch {
        let tree = Snapshot::read(target).await?.tree(Timestamp::now());
        print(&render(&tree, output, fancy))?;
        return Ok(ExitCode::SUCCESS);
    }
    let selector = children_selector(&target.release);
    let by_name = watcher::Config::default().fields(&format!("metadata.name={}", target.release));
    let children = watcher::Config::default().labels(&selector);
    // Any event wakes a new read; what is drawn is read afresh (lists are cheap, and a tree
    // built from one consistent read is simpler than four merged caches). Between events a
    // terminal is redrawn from the last read, for the elapsed times.
    let mut changes = stream::select_all([
        watcher(target.releases(), by_name)
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(target.api::<Pod>(), children.clone())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(target.api::<Job>(), children.clone())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(target.api::<Deployment>(), children)
            .default_backoff()
            .map(|_| ())
            .boxed(),
    ]);
    let mut snapshot = Snapshot::read(target).await?;
    let mut last = String::new();
    loop {
        let text = render(&snapshot.tree(Timestamp::now()), output, fancy);
        if text != last {
            if fancy {
                // Home and clear, then the tree: a redraw in place.
                print(&format!("\x1b[H\x1b[2J{text}"))?;
            } else {
                print(&format!("{text}\n"))?;
            }
            last = text;
        }
        let changed = if fancy {
            tokio::time::timeout(TICK, changes.next()).await.is_ok()
        } else if changes.next().await.is_none() {
            return Ok(ExitCode::SUCCESS);
        } else {
            true
        };
        if changed {
            // Let a burst of events (a rollout) settle into one read.
            tokio::time::sleep(Duration::from_millis(200)).await;
            snapshot = Snapshot::read(target).await?;
        }
    }
}

/// The release and its children, as read at one time.
struct Snapshot {
    release: ListaCompraRelease,
    jobs: Option<Vec<Job>>,
    deployments: Option<Vec<Deployment>>,
    pods: Option<Vec<Pod>>,
}

impl Snapshot {
    /// Reads the release and its children.
    async fn read(target: &Target) -> Result<Self> {
        let release = target.release().await?;
        let (jobs, deployments, pods) = futures::try_join!(
            target.children::<Job>(),
            target.children::<Deployment>(),
            target.children::<Pod>(),
        )?;
        Ok(Self {
            release,
            jobs,
            deployments,
            pods,
        })
    }

    /// The tree, its elapsed times counted to `now`.
    fn tree(&self, now: Timestamp) -> Node {
        let hidden = [
            ("jobs", self.jobs.is_none()),
            ("deployments", self.deployments.is_none()),
            ("pods", self.pods.is_none()),
        ]
        .into_iter()
        .filter_map(|(kind, hidden)| hidden.then_some(kind))
        .collect();
        tree::build(&Inputs {
            release: &self.release,
            jobs: self.jobs.as_deref().unwrap_or_default(),
            deployments: self.deployments.as_deref().unwrap_or_default(),
            pods: self.pods.as_deref().unwrap_or_default(),
            hidden,
            now,
        })
    }
}

fn render(tree: &Node, output: Output, fancy: bool) -> String {
    match output {
        Output::Text => tree::render(tree, fancy),
        // One JSON document per line, also when watching (NDJSON).
        Output::Json => format!("{}\n", serde_json::to_string(tree).unwrap_or_default()),
    }
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
