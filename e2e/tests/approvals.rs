//! Release approvals and the runbook's people on the real cluster. Every identity is a
//! client certificate signed by the cluster's CA, so RBAC and the admission policy see a
//! real user and real groups; the RBAC is the chart's persona ClusterRoles, bound in the
//! test's namespace as `personas.bindings` binds them; the ValidatingAdmissionPolicy is the
//! chart's (config/rbac/approval-policy.yaml); the operator is the real process.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use e2e::access::{Check, verify};
use e2e::approvals::{apply_policy_and_personas, bind};
use e2e::cluster::{TestContext, eventually, with_namespace};
use e2e::identity::Identity;
use e2e::operator::OperatorProcess;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use listacompra_crds::status::condition;
use listacompra_crds::{ListaCompraApproval, ListaCompraRelease, Phase};
use serde_json::json;

const RELEASE: &str = "shop";
const WAIT: Duration = Duration::from_secs(90);

fn approval(
    name: &str,
    approver: &str,
    role: &str,
    version: &str,
    attempt: i64,
) -> ListaCompraApproval {
    e2e::approvals::approval(name, RELEASE, version, attempt, role, approver)
}

/// Creates `approval` as the user of `client`: the API server's answer.
async fn create(client: &Client, ns: &str, approval: &ListaCompraApproval) -> kube::Result<()> {
    Api::<ListaCompraApproval>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), approval)
        .await
        .map(|_| ())
}

/// The API server refuses `approval` from `client` with `code`, saying `says`.
async fn refused(
    client: &Client,
    ns: &str,
    approval: &ListaCompraApproval,
    code: u16,
    says: &str,
) -> Result<()> {
    match create(client, ns, approval).await {
        Err(kube::Error::Api(status)) if status.code == code && status.message.contains(says) => {
            Ok(())
        }
        Err(other) => bail!("expected {code} saying {says:?}, got {other}"),
        Ok(()) => bail!("{approval:?} was admitted; expected {code} saying {says:?}"),
    }
}

async fn release(ctx: &TestContext) -> Result<ListaCompraRelease> {
    Ok(ctx.api::<ListaCompraRelease>().get(RELEASE).await?)
}

fn reconciling(release: &ListaCompraRelease) -> (String, String) {
    release
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == condition::RECONCILING)
        })
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_verified_by_the_api_server_and_gate_the_release() {
    with_namespace("approvals", |ctx| async move {
        let ns = ctx.namespace.clone();
        e2e::crd::install_crds(&ctx.client).await?;
        apply_policy_and_personas(&ctx.cluster).await?;
        let client = &ctx.client;
        bind(client, &ns, "viewer", &["listacompra:viewer"]).await?;
        bind(client, &ns, "approver", &["listacompra:qa", "listacompra:product-owner"]).await?;
        bind(client, &ns, "devops", &["listacompra:devops"]).await?;
        bind(client, &ns, "release-manager", &["listacompra:release-manager"]).await?;

        let dir = std::env::temp_dir().join(format!("{ns}-identities"));
        let who = |user: &'static str, groups: &'static [&'static str]| {
            let (cluster, dir) = (ctx.cluster.clone(), dir.clone());
            async move { Identity::new(&cluster, user, groups, &dir).await }
        };
        let alice = who("alice", &["listacompra:qa"]).await?;
        let pat = who("pat", &["listacompra:product-owner"]).await?;
        let rita = who("rita", &["listacompra:release-manager"]).await?;
        let dan = who("dan", &["listacompra:devops"]).await?;
        let vera = who("vera", &["listacompra:viewer"]).await?;
        let oscar = who("oscar", &["listacompra:outsiders"]).await?;

        // RBAC: every persona may do its job and nothing more, here and nowhere else.
        let g = "listacompra.app";
        let lcr = |verb: &str| Check::new(verb, g, "listacomprareleases", &ns);
        let status = |verb: &str| Check::new(verb, g, "listacomprareleases/status", &ns);
        let approvals = |verb: &str| Check::new(verb, g, "listacompraapprovals", &ns);
        let secrets = Check::new("get", "", "secrets", &ns);
        let elsewhere = |verb: &str| Check::new(verb, g, "listacomprareleases", "default");
        let read = [lcr("get"), lcr("list"), lcr("watch"), approvals("list")];
        let write = [lcr("create"), lcr("patch"), lcr("update"), lcr("delete")];
        let cases: Vec<(&Identity, Vec<Check>, Vec<Check>)> = vec![
            (
                &vera,
                read.to_vec(),
                [write.to_vec(), vec![approvals("create"), secrets.clone(), elsewhere("get")]]
                    .concat(),
            ),
            (
                &alice,
                [read.to_vec(), vec![approvals("create")]].concat(),
                [
                    write.to_vec(),
                    vec![
                        status("patch"),
                        approvals("delete"),
                        approvals("update"),
                        secrets.clone(),
                        Check::new("create", g, "listacompraapprovals", "default"),
                    ],
                ]
                .concat(),
            ),
            (
                &pat,
                [read.to_vec(), vec![approvals("create")]].concat(),
                [write.to_vec(), vec![approvals("delete"), status("patch")]].concat(),
            ),
            (
                &dan,
                [read.to_vec(), write.to_vec()].concat(),
                vec![
                    approvals("create"),
                    approvals("delete"),
                    status("patch"),
                    secrets.clone(),
                    elsewhere("create"),
                ],
            ),
            (
                &rita,
                [
                    read.to_vec(),
                    write.to_vec(),
                    vec![approvals("create"), approvals("delete")],
                ]
                .concat(),
                vec![
                    status("patch"),
                    approvals("update"),
                    secrets.clone(),
                    elsewhere("create"),
                ],
            ),
            (
                &oscar,
                Vec::new(),
                [read.to_vec(), write.to_vec(), vec![approvals("create")]].concat(),
            ),
        ];
        for (identity, must, must_not) in &cases {
            verify(&identity.client().await?, must, must_not)
                .await
                .with_context(|| format!("RBAC of {} {:?}", identity.user, identity.groups))?;
        }

        // The release manager applies a release that needs QA and the Product Owner. Its
        // Secrets do not exist: once approved, it goes on to wait for them, launching nothing.
        let _operator = OperatorProcess::start(
            ctx.cluster.kubeconfig(),
            &ns,
            std::env::temp_dir().join(format!("{ns}-operator.log")),
        )?;
        let mut manifest = e2e::crd::minimal_release(RELEASE);
        // A role nobody may approve as is refused: the release would wait for ever.
        manifest["spec"]["approvals"] = json!({ "requiredRoles": ["qa", "po"] });
        let never: ListaCompraRelease = serde_json::from_value(manifest.clone())?;
        let releases = Api::<ListaCompraRelease>::namespaced(rita.client().await?, &ns);
        let rejection = eventually("the release approvals policy to be enforced", WAIT, || async {
            match releases.create(&PostParams { dry_run: true, ..PostParams::default() }, &never).await {
                Err(kube::Error::Api(s)) if s.code == 422 => Some(s.message),
                _ => None,
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;
        ensure!(
            rejection.contains("spec.approvals.requiredRoles names a role nobody may approve as: po"),
            "{rejection}"
        );
        manifest["spec"]["approvals"] = json!({ "requiredRoles": ["qa", "product-owner"] });
        let object: ListaCompraRelease = serde_json::from_value(manifest)?;
        Api::<ListaCompraRelease>::namespaced(rita.client().await?, &ns)
            .create(&PostParams::default(), &object)
            .await
            .context("the release manager applies the release")?;
        let attempt = eventually("the release to await approval", WAIT, || async {
            let r = release(&ctx).await.ok()?;
            let s = r.status.as_ref()?;
            (s.phase == Some(Phase::AwaitingApproval)).then_some(s.attempt?)
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let (reason, message) = reconciling(&release(&ctx).await?);
        ensure!(reason == "AwaitingApproval", "{reason}: {message}");
        ensure!(
            message.contains(&format!("1.0.0 attempt {attempt} by qa, product-owner")),
            "{message}"
        );

        // Who approves is checked by the API server (the policy is live once a dry run of a
        // forged approval is refused).
        let alice_client = alice.client().await?;
        let forged = approval("forged", "pat", "qa", "1.0.0", attempt);
        eventually("the approvals policy to be enforced", WAIT, || async {
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let answer = Api::<ListaCompraApproval>::namespaced(alice_client.clone(), &ns)
                .create(&dry, &forged)
                .await;
            matches!(answer, Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy"))
                .then_some(())
        })
        .await
        .map_err(anyhow::Error::msg)?;
        refused(
            &alice_client,
            &ns,
            &forged,
            403,
            "spec.approver must be your own user name, alice, not pat",
        )
        .await?;
        refused(
            &alice_client,
            &ns,
            &approval("other-role", "alice", "product-owner", "1.0.0", attempt),
            403,
            "user alice may not approve as product-owner: approvers of that role are members of listacompra:product-owner",
        )
        .await?;
        refused(
            &rita.client().await?,
            &ns,
            &approval("manager-as-qa", "rita", "qa", "1.0.0", attempt),
            403,
            "user rita may not approve as qa",
        )
        .await?;
        refused(
            &alice_client,
            &ns,
            &approval("unknown-role", "alice", "dev", "1.0.0", attempt),
            422,
            "spec.role dev is not an approval role; the roles are: product-owner, qa, release-manager",
        )
        .await?;
        refused(
            &oscar.client().await?,
            &ns,
            &approval("outsider", "oscar", "qa", "1.0.0", attempt),
            403,
            "forbidden",
        )
        .await?;

        // Approvals of another version or another attempt are admitted and do not count.
        create(&alice_client, &ns, &approval("qa-next", "alice", "qa", "1.1.0", attempt)).await?;
        let pat_client = pat.client().await?;
        let po_retry = approval("po-retry", "pat", "product-owner", "1.0.0", attempt + 1);
        create(&pat_client, &ns, &po_retry).await?;
        // An approval cannot be edited into another one, not even by an admin.
        let edit = ctx
            .api::<ListaCompraApproval>()
            .patch(
                "po-retry",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "attempt": attempt } })),
            )
            .await;
        ensure!(
            matches!(&edit, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("an approval cannot be changed")),
            "{edit:?}"
        );
        // QA approves this attempt: counted, and the release still waits for the PO.
        create(&alice_client, &ns, &approval("qa-ok", "alice", "qa", "1.0.0", attempt)).await?;
        let waiting = eventually("QA's approval to be counted", WAIT, || async {
            let r = release(&ctx).await.ok()?;
            let s = r.status.as_ref()?;
            (s.approvals.len() == 1).then(|| r.clone())
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let s = waiting.status.as_ref().context("status")?;
        ensure!(s.phase == Some(Phase::AwaitingApproval), "{:?}", s.phase);
        ensure!(
            (s.approvals[0].role.as_str(), s.approvals[0].approver.as_str(), s.approvals[0].approval.as_str())
                == ("qa", "alice", "qa-ok"),
            "{:?}",
            s.approvals
        );
        let (_, message) = reconciling(&waiting);
        ensure!(
            message.contains("by product-owner (approved: qa by alice)"),
            "{message}"
        );

        // The Product Owner approves: the release goes on (to wait for its Secrets).
        create(&pat_client, &ns, &approval("po-ok", "pat", "product-owner", "1.0.0", attempt))
            .await?;
        let approved = eventually("the release to leave AwaitingApproval", WAIT, || async {
            let r = release(&ctx).await.ok()?;
            (r.status.as_ref()?.phase == Some(Phase::Pending)).then_some(r)
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let s = approved.status.as_ref().context("status")?;
        let counted: Vec<(&str, &str)> = s
            .approvals
            .iter()
            .map(|r| (r.role.as_str(), r.approver.as_str()))
            .collect();
        ensure!(counted == [("qa", "alice"), ("product-owner", "pat")], "{counted:?}");
        let (reason, message) = reconciling(&approved);
        ensure!(reason == "WaitingForReferences", "{reason}: {message}");
        ensure!(s.attempt == Some(attempt), "approving starts no new attempt");

        // Both approvals are in the release's Events, with who approved.
        let events = eventually("two Approved Events", WAIT, || async {
            let list = ctx.api::<Event>().list(&Default::default()).await.ok()?;
            let notes: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("Approved"))
                .filter_map(|e| e.message)
                .collect();
            (notes.len() >= 2).then_some(notes)
        })
        .await
        .map_err(anyhow::Error::msg)?;
        for who in ["alice approved 1.0.0", "pat approved 1.0.0"] {
            ensure!(
                events.iter().any(|n| n.contains(who)),
                "no Event saying {who}: {events:?}"
            );
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
