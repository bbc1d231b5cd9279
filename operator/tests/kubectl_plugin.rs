//! `kubectl listacompra` against the real control plane and the operator as a real process:
//! the pipeline's gate (`status`) through a KPI rollback and a retry, the tree, the history,
//! pause, resume and abort, each effect checked on the cluster, and approvals given as the
//! user running the plugin.

mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::approvals::Approvers;
use e2e::binaries::workspace_binary;
use e2e::cluster::{TestContext, eventually, with_namespace};
use e2e::env::Component;
use e2e::services::Services;
use listacompra_crds::release::ABORT_ANNOTATION;
use listacompra_crds::status::condition;
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::json;
use support::{
    RELEASE_TIMEOUT, apply, condition as cond, deployed_image, latency_analysis, release,
    stable_1_0_0, wait_phase,
};

const IMAGE: &str = "registry.example/listacompra/api";

/// What one run of the plugin did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `kubectl-listacompra ARGS -n <test namespace>` as the user of `kubeconfig` (the
/// cluster's admin when `None`), its output piped as in a pipeline.
async fn plugin(ctx: &TestContext, kubeconfig: Option<&Path>, args: &[&str]) -> Result<Run> {
    let output = tokio::process::Command::new(workspace_binary("kubectl-listacompra")?)
        .env("KUBECONFIG", kubeconfig.unwrap_or(ctx.cluster.kubeconfig()))
        .args(args)
        .args(["-n", &ctx.namespace])
        .output()
        .await
        .context("running kubectl-listacompra")?;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Plays the kubelet's part for the (first) pod of Job `job`: its container "printed"
/// `lines`, in the CRI log format, to a file that kwok's kubelet API serves (a kwok `Logs`
/// object). Returns the pod's name.
async fn play_kubelet_logs(ctx: &TestContext, job: &str, lines: &[&str]) -> Result<String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let pod = eventually(&format!("a pod of Job {job}"), RELEASE_TIMEOUT, || async {
        ctx.api::<Pod>()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let file = std::env::temp_dir().join(format!("{}-{name}.log", ctx.namespace));
    let text: String = lines
        .iter()
        .map(|l| format!("2026-12-01T10:00:00.000000000Z stdout F {l}\n"))
        .collect();
    std::fs::write(&file, text)?;
    e2e::runner::publish_file(&ctx.client, &ctx.namespace, &pod, &file).await?;
    // kwok serves it once its informer has the object.
    let pods = ctx.api::<Pod>();
    eventually(
        &format!("kwok to serve the logs of pod {name}"),
        RELEASE_TIMEOUT,
        || async {
            let text = pods.logs(&name, &Default::default()).await.ok()?;
            text.contains(lines.last().copied().unwrap_or_default())
                .then_some(())
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(name)
}

async fn lc(ctx: &TestContext) -> Result<ListaCompraRelease> {
    Ok(ctx.api::<ListaCompraRelease>().get("lc").await?)
}

#[tokio::test]
async fn the_plugin_gates_a_pipeline_on_the_verdict_and_drives_the_release() {
    with_namespace("op-plugin", |ctx| async move {
        let services = Services::start(&[Component::Prometheus]).await?;
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let ns = ctx.namespace.clone();
        let latency = |v110: u32, v120: u32| {
            format!(
                "# TYPE lc_e2e_p95_latency_ms gauge\nlc_e2e_p95_latency_ms{{version=\"1.1.0\"}} {v110}\nlc_e2e_p95_latency_ms{{version=\"1.2.0\"}} {v120}\n"
            )
        };
        endpoint.set_metrics(&latency(912, 100)).await;
        let target = support::scrape(&services, &ctx, &endpoint)?;
        let prometheus = services.prometheus_url()?.to_owned();
        let result = async {
            // 1.1.0 breaches its KPI: the pipeline's gate fails, naming the KPI and its value.
            let mut manifest = release("1.1.0", 2, &endpoint.url);
            manifest["spec"]["analysis"] = latency_analysis(&prometheus);
            apply(&ctx, &manifest).await?;
            let run = plugin(&ctx, None, &["status", "lc", "--timeout", "180s"]).await?;
            ensure!(run.code == Some(1), "status of a rolled-back release:\n{run}");
            ensure!(
                run.stderr.contains(&format!("{ns}/lc 1.1.0 rolled back to 1.0.0: KpiBreached"))
                    && run.stderr.contains("p95-latency-ms")
                    && run.stderr.contains("912 > max 350"),
                "the verdict names the KPI:\n{run}"
            );
            ensure!(
                run.stdout.contains("Verifying") && run.stdout.contains("RolledBack"),
                "one line per step:\n{run}"
            );

            // The tree, piped: plain text, the failed KPI against its bound.
            let run = plugin(&ctx, None, &["get", "lc"]).await?;
            ensure!(run.code == Some(0), "get:\n{run}");
            for expected in [
                format!("ListaCompraRelease {ns}/lc  [failed]  1.1.0 · RolledBack"),
                "Deployment lc-api  [ok]  2/2 ready".to_owned(),
                format!("{IMAGE}:1.0.0"),
                "Deployment lc-worker  [ok]".to_owned(),
                "Pod lc-api-".to_owned(),
                "Gate health  [ok]".to_owned(),
                "KPI p95-latency-ms  [failed]  912 (max 350)".to_owned(),
            ] {
                ensure!(run.stdout.contains(&expected), "{expected:?} missing from get:\n{run}");
            }
            ensure!(!run.stdout.contains('\u{1b}'), "no colours when piped:\n{run}");
            let run = plugin(&ctx, None, &["get", "lc", "-o", "json"]).await?;
            let tree: serde_json::Value = serde_json::from_str(&run.stdout)
                .with_context(|| format!("get -o json:\n{run}"))?;
            ensure!(tree["state"] == "failed" && tree["kind"] == "ListaCompraRelease", "{tree}");

            // What the migration printed, through the pod log API (kwok serves the file the
            // test writes as the kubelet would: the pods of these tests run nothing).
            let job = lc(&ctx).await?.status.and_then(|s| s.migration_job).unwrap_or_default();
            let written = play_kubelet_logs(&ctx, &job, &["migrating to revision 2", "revision 2 applied"]).await?;
            let run = plugin(&ctx, None, &["logs", "lc", "migration"]).await?;
            ensure!(
                run.code == Some(0)
                    && run.stdout.contains(&format!("==> pod {written} (Job {job}) <=="))
                    && run.stdout.contains("migrating to revision 2\nrevision 2 applied"),
                "logs of the migration Job:\n{run}"
            );
            let run = plugin(&ctx, None, &["logs", "lc", "migration", "--tail", "1"]).await?;
            ensure!(
                run.stdout.contains("revision 2 applied") && !run.stdout.contains("migrating to"),
                "--tail 1:\n{run}"
            );
            let run = plugin(&ctx, None, &["logs", "lc", "smoke"]).await?;
            ensure!(
                run.code == Some(5) && run.stderr.contains("status.smokeTest.job is empty"),
                "no smoke test in this release:\n{run}"
            );

            // History: the rollback with its reason, after 1.0.0's success.
            let run = plugin(&ctx, None, &["history", "lc"]).await?;
            let lines: Vec<&str> = run.stdout.lines().collect();
            ensure!(
                lines.len() == 3
                    && lines[1].starts_with("1.1.0")
                    && lines[1].contains("RolledBack")
                    && lines[1].contains("KpiBreached")
                    && lines[2].starts_with("1.0.0")
                    && lines[2].contains("Succeeded"),
                "history:\n{run}"
            );

            // Fixed: a retry (a spec change, with a warning naming the tool that applied the
            // release) releases 1.1.0 again and the gate passes.
            endpoint.set_metrics(&latency(120, 100)).await;
            let ended = lc(&ctx).await?.status.and_then(|s| s.attempt).unwrap_or_default();
            let run = plugin(&ctx, None, &["retry", "lc"]).await?;
            ensure!(run.code == Some(0), "retry:\n{run}");
            ensure!(
                run.stderr.contains("also managed by e2e-gitops")
                    && run.stdout.contains("spec.retryToken set to")
                    && run.stdout.contains("a change of the spec"),
                "retry warns about the GitOps manager and says it changed the spec:\n{run}"
            );
            let token = lc(&ctx).await?.spec.retry_token;
            ensure!(
                token == Some(format!("retry-after-attempt-{ended}")),
                "the token names the attempt that ended ({ended}): {token:?}"
            );
            let run = plugin(&ctx, None, &["status", "lc", "--timeout", "180s"]).await?;
            ensure!(run.code == Some(0), "status of the retried release:\n{run}");
            ensure!(run.stdout.contains(&format!("{ns}/lc 1.1.0 succeeded")), "{run}");
            ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));
            let run = plugin(&ctx, None, &["retry", "lc"]).await?;
            ensure!(
                run.code == Some(5) && run.stderr.contains("nothing to retry"),
                "a succeeded release has nothing to retry:\n{run}"
            );

            // 1.2.0 in a long analysis: pause holds it, resume lets it go, abort rolls it
            // back to 1.1.0 at once.
            let mut manifest = release("1.2.0", 3, &endpoint.url);
            manifest["spec"]["analysis"] = latency_analysis(&prometheus);
            manifest["spec"]["analysis"]["intervalSeconds"] = json!(60);
            manifest["spec"]["progressDeadlineSeconds"] = json!(900);
            apply(&ctx, &manifest).await?;
            wait_phase(&ctx, "1.2.0", Phase::Verifying, RELEASE_TIMEOUT).await?;
            let run = plugin(&ctx, None, &["pause", "lc"]).await?;
            ensure!(run.code == Some(0) && run.stdout.contains("spec.paused set to true"), "pause:\n{run}");
            ensure!(lc(&ctx).await?.spec.paused, "pause sets spec.paused");
            eventually("the release to say it is paused", Duration::from_secs(60), || async {
                let lc = lc(&ctx).await.ok()?;
                (cond(&lc, condition::PROGRESSING).1 == "Paused").then_some(())
            })
            .await
            .map_err(anyhow::Error::msg)?;
            let run = plugin(&ctx, None, &["resume", "lc"]).await?;
            ensure!(run.code == Some(0) && run.stdout.contains("spec.paused set to false"), "resume:\n{run}");
            ensure!(!lc(&ctx).await?.spec.paused, "resume clears spec.paused");
            let attempt = lc(&ctx).await?.status.and_then(|s| s.attempt).unwrap_or_default();
            let run = plugin(&ctx, None, &["abort", "lc"]).await?;
            ensure!(
                run.code == Some(0)
                    && run.stdout.contains(&format!("attempt {attempt} of 1.2.0 aborted; rolling back to 1.1.0")),
                "abort:\n{run}"
            );
            let annotated = lc(&ctx).await?;
            ensure!(
                annotated.metadata.annotations.unwrap_or_default().get(ABORT_ANNOTATION)
                    == Some(&attempt.to_string()),
                "abort annotates the attempt"
            );
            ensure!(!annotated.spec.paused && annotated.spec.version == "1.2.0", "abort does not touch the spec");
            let run = plugin(&ctx, None, &["status", "lc", "--timeout", "120s"]).await?;
            ensure!(
                run.code == Some(1)
                    && run.stderr.contains("1.2.0 rolled back to 1.1.0: Aborted")
                    && run.stderr.contains(&format!("attempt {attempt} of 1.2.0 aborted on request")),
                "status of an aborted release:\n{run}"
            );
            ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));
            let run = plugin(&ctx, None, &["abort", "lc"]).await?;
            ensure!(
                run.code == Some(5) && run.stderr.contains("no attempt in flight"),
                "nothing left to abort:\n{run}"
            );
            let run = plugin(&ctx, None, &["status", "missing"]).await?;
            ensure!(
                run.code == Some(5) && run.stderr.contains(&format!("ListaCompraRelease {ns}/missing not found")),
                "a missing release:\n{run}"
            );
            Ok(())
        }
        .await;
        std::fs::remove_file(&target)?;
        if result.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        result
    })
    .await;
}

#[tokio::test]
async fn approvals_are_given_as_the_user_running_the_plugin() {
    with_namespace("op-plugin-approve", |ctx| async move {
        let dir = std::env::temp_dir().join(format!("{}-identities", ctx.namespace));
        let approvers = Approvers::set_up(&ctx.cluster, &ctx.client, &ctx.namespace, &dir).await?;
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let as_role = |role: &str| {
            approvers
                .person(role)
                .map(|p| p.kubeconfig().to_owned())
                .with_context(|| format!("nobody approves as {role}"))
        };
        let (qa, po) = (as_role("qa")?, as_role("product-owner")?);
        let result = async {
            let mut manifest = release("1.1.0", 2, &endpoint.url);
            manifest["spec"]["approvals"] = json!({ "requiredRoles": ["qa", "product-owner"] });
            apply(&ctx, &manifest).await?;
            wait_phase(&ctx, "1.1.0", Phase::AwaitingApproval, RELEASE_TIMEOUT).await?;
            let run = plugin(&ctx, Some(&qa), &["get", "lc"]).await?;
            ensure!(
                run.stdout.contains(
                    "Role qa  [waiting]  waiting: kubectl listacompra approve lc --role qa"
                ),
                "the tree says who must approve and how:\n{run}"
            );
            let run = plugin(&ctx, Some(&qa), &["approve", "lc", "--role", "qa"]).await?;
            ensure!(
                run.code == Some(0) && run.stdout.contains("approved as qa by alice"),
                "approve:\n{run}"
            );
            let run = plugin(&ctx, Some(&qa), &["approve", "lc", "--role", "qa"]).await?;
            ensure!(
                run.code == Some(0) && run.stdout.contains("you (alice) already approved attempt"),
                "approving again is a no-op:\n{run}"
            );
            // Alice is QA, not the Product Owner: the API server refuses.
            let run = plugin(
                &ctx,
                Some(&qa),
                &["approve", "lc", "--role", "product-owner"],
            )
            .await?;
            ensure!(
                run.code == Some(4)
                    && run.stderr.contains("approving")
                    && run.stderr.contains("product-owner"),
                "approving in someone else's role:\n{run}"
            );
            let run = plugin(&ctx, Some(&po), &["approve", "lc", "--role", "ops"]).await?;
            ensure!(
                run.code == Some(5) && run.stderr.contains("requiredRoles: qa, product-owner"),
                "a role the release does not need:\n{run}"
            );
            let run = plugin(
                &ctx,
                Some(&po),
                &["approve", "lc", "--role", "product-owner"],
            )
            .await?;
            ensure!(
                run.code == Some(0) && run.stdout.contains("by pat"),
                "approve:\n{run}"
            );
            let run = plugin(&ctx, None, &["status", "lc", "--timeout", "180s"]).await?;
            ensure!(run.code == Some(0), "status after both approvals:\n{run}");
            let run = plugin(&ctx, None, &["history", "lc"]).await?;
            ensure!(
                run.stdout
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.contains("alice (qa)") && l.contains("pat (product-owner)")),
                "history names the approvers:\n{run}"
            );
            let run = plugin(
                &ctx,
                Some(&po),
                &["approve", "lc", "--role", "product-owner"],
            )
            .await?;
            ensure!(
                run.code == Some(5) && run.stderr.contains("is not waiting for approvals"),
                "approving a settled release:\n{run}"
            );
            Ok(())
        }
        .await;
        if result.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        result
    })
    .await;
}

/// A terminal of its own (a tmux server on a private socket), killed when dropped.
struct Terminal {
    socket: String,
}

impl Terminal {
    /// Runs `command` in a new 160×50 terminal.
    async fn start(socket: &str, command: &str) -> Result<Self> {
        let status = tokio::process::Command::new("tmux")
            .args([
                "-L",
                socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "50",
            ])
            .arg(command)
            .status()
            .await
            .context("starting tmux (make test installs it)")?;
        ensure!(status.success(), "tmux new-session failed");
        Ok(Self {
            socket: socket.to_owned(),
        })
    }

    /// What the terminal shows now, with its colours as escape sequences.
    async fn screen(&self) -> Result<String> {
        let output = tokio::process::Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-e"])
            .output()
            .await?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[tokio::test]
async fn get_watch_redraws_the_tree_in_a_terminal_as_the_release_moves() {
    with_namespace("op-plugin-watch", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let command = format!(
            "env -u NO_COLOR KUBECONFIG={} {} get lc -w -n {}",
            ctx.cluster.kubeconfig().display(),
            workspace_binary("kubectl-listacompra")?.display(),
            ctx.namespace
        );
        let terminal = Terminal::start(&ctx.namespace, &command).await?;
        let result = async {
            let mut screens = Vec::new();
            // Waits until the terminal shows `text`, keeping every distinct screen seen.
            let mut until = async |text: &str| -> Result<String> {
                let waited = eventually(
                    &format!("the terminal to show {text:?}"),
                    RELEASE_TIMEOUT,
                    || async {
                        let screen = terminal.screen().await.ok()?;
                        screen.contains(text).then_some(screen)
                    },
                )
                .await;
                let last = terminal.screen().await?;
                if screens.last() != Some(&last) {
                    screens.push(last.clone());
                }
                waited.map_err(|e| anyhow::anyhow!("{e}; the terminal shows:\n{last}"))
            };
            let settled = until("1.0.0 · Succeeded").await?;
            ensure!(
                settled.contains("├─ ") && settled.contains("✔") && settled.contains("\u{1b}["),
                "a terminal gets tree lines, symbols and colours:\n{settled}"
            );
            apply(&ctx, &release("1.1.0", 2, &endpoint.url)).await?;
            // Redrawn in place as the release moves, without a new command.
            let moving = until("1.1.0 · ").await?;
            ensure!(
                !moving.contains("1.0.0 · Succeeded"),
                "the old tree is replaced:\n{moving}"
            );
            let done = until("1.1.0 · Succeeded").await?;
            ensure!(
                done.contains(&format!("{IMAGE}:1.1.0")) && done.contains("Gate health"),
                "the final tree shows the new image and the gate:\n{done}"
            );
            Ok(())
        }
        .await;
        drop(terminal);
        if result.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        result
    })
    .await;
}
