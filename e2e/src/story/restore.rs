//! Scenario 6 of the story, the runbook's corrupt-database procedure: the load stops; the
//! scheduled incremental backup runs now (a Job from its CronJob, as `kubectl create job
//! --from` makes it); a bad script rewrites every item's name; a `ListaCompraRestore` of that
//! Job's backup set, approved by QA and the Product Owner, stops traffic and PostgreSQL,
//! runs `pgbackrest restore`, migrates to the stable schema and brings traffic back behind
//! the smoke test. Every row of the backup comes back, no corrupted one stays, and the
//! receipt still downloads.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use listacompra_crds::restore::{RestorePhase, RestoreStep};
use listacompra_crds::{ListaCompraRestore, ListaCompraRestoreSpec, Phase};

use super::{APPROVAL_ROLES, SCHEMAS, Story, check, phase_name};
use crate::backups::BackedUpPostgres;
use crate::stack::{POLL, RELEASE};
use crate::{Error, Result};

/// The restore the story creates.
pub const RESTORE: &str = "undo-corruption";
/// The tables compared row by row across the restore.
pub const RESTORED_TABLES: [&str; 3] = ["users", "lists", "items"];
/// The bad script: every item's name overwritten.
const CORRUPTION: &str = "UPDATE items SET name = 'corrupted-' || id::text";
/// Longest the backup Job may take (its pod starts, pgBackRest backs up a small database).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest the restore may take: seven steps, each a rollout or a Job on a busy machine.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(360);

impl Story<'_> {
    /// Scenario 6 (with [`Story::with_backups`]): the database is corrupted and restored
    /// from the backup taken just before.
    pub async fn restore_after_corruption(&mut self, database: &BackedUpPostgres) -> Result<()> {
        self.say(
            "== 6. a bad script corrupts every item; a ListaCompraRestore brings back the backup taken before",
        );
        // A restore stops traffic and loses the writes made after its backup: the load stops
        // first, once every write it was told succeeded is read back.
        self.stop_load().await?;
        let label = self.backup_now(database).await?;
        let mut at_backup = Vec::new();
        for table in RESTORED_TABLES {
            at_backup.push(self.stack.rows(table).await?);
        }
        let corrupted = self.stack.execute(CORRUPTION).await?;
        self.say(format!("{CORRUPTION}: {corrupted} items corrupted"));
        check(corrupted > 0, || "no item to corrupt".to_owned())?;

        let restores: Api<ListaCompraRestore> =
            Api::namespaced(self.stack.client.clone(), &self.stack.namespace);
        let restore = ListaCompraRestore::new(
            RESTORE,
            ListaCompraRestoreSpec {
                release: RELEASE.to_owned(),
                backup_set: Some(label.clone()),
            },
        );
        let created = restores
            .create(&PostParams::default(), &restore)
            .await
            .map_err(|source| Error::Kube {
                action: format!("creating the restore {RESTORE}"),
                source,
            })?;
        self.say(format!(
            "apply ListaCompraRestore {RESTORE} (release {RELEASE}, backup set {label})"
        ));
        let uid = created.metadata.uid.unwrap_or_default();
        let restored = self.follow_restore(&restores, &uid).await?;

        let status = restored.status.unwrap_or_default();
        check(status.phase == Some(RestorePhase::Succeeded), || {
            format!("the restore did not succeed: {status:#?}")
        })?;
        let order: Vec<RestoreStep> = status.steps.iter().map(|s| s.step).collect();
        check(
            order == RestoreStep::ORDER && status.steps.iter().all(|s| s.completion_time.is_some()),
            || {
                format!(
                    "the restore's steps are not the seven, each ended: {:?}",
                    status.steps
                )
            },
        )?;
        let release = self.returned().await?;
        let restored_condition = release
            .conditions
            .iter()
            .any(|c| c.type_ == "MigrationsApplied" && c.reason == "Restored");
        check(
            release.phase == Some(Phase::RolledBack)
                && release.restore.is_none()
                && restored_condition,
            || format!("the release did not return to RolledBack, schema Restored: {release:#?}"),
        )?;
        for (table, then) in RESTORED_TABLES.iter().zip(&at_backup) {
            let now = self.stack.rows(table).await?;
            let missing = then.iter().filter(|row| !now.contains(row)).count();
            let corrupt = now.iter().filter(|row| row.contains("corrupted-")).count();
            check(missing == 0 && corrupt == 0, || {
                format!(
                    "{table} after the restore: {missing} rows of the backup missing, {corrupt} corrupted rows"
                )
            })?;
            self.say(format!(
                "  {table}: all {} rows of backup {label} back, none corrupted",
                then.len()
            ));
        }
        self.expect_serving("1.1.0", SCHEMAS[1]).await?;
        self.read_receipt("after the restore").await
    }

    /// Runs the release's incremental backup now, as a Job from its CronJob, and waits for
    /// it to succeed; the label of the one set it made (named, so that the restore takes
    /// this set even if another backup ran since).
    async fn backup_now(&mut self, database: &BackedUpPostgres) -> Result<String> {
        let before = database.sets()?;
        let cron_job = format!("{RELEASE}-backup-incr");
        let job = format!("{RELEASE}-backup-now");
        let create = ["create", "job", &job, &format!("--from=cronjob/{cron_job}")];
        self.kubectl(&create).await?;
        self.say(format!("kubectl {}", create.join(" ")));
        let jobs: Api<Job> = Api::namespaced(self.stack.client.clone(), &self.stack.namespace);
        let began = Instant::now();
        loop {
            self.runner_events();
            let status = jobs
                .get(&job)
                .await
                .map_err(|source| Error::Kube {
                    action: format!("reading the Job {job}"),
                    source,
                })?
                .status
                .unwrap_or_default();
            if status.succeeded.unwrap_or(0) > 0 {
                break;
            }
            let failed = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Failed" && c.status == "True");
            if let Some(failed) = failed {
                return Err(Error::Check {
                    message: format!(
                        "the backup Job {job} failed: {}",
                        failed.message.as_deref().unwrap_or("no message")
                    ),
                });
            }
            check(began.elapsed() < BACKUP_TIMEOUT, || {
                format!(
                    "the backup Job {job} did not succeed within {BACKUP_TIMEOUT:?}: {status:?}"
                )
            })?;
            tokio::time::sleep(POLL).await;
        }
        let new: Vec<String> = database
            .sets()?
            .into_iter()
            .filter(|set| !before.contains(set))
            .collect();
        let [label] = <[String; 1]>::try_from(new.clone()).map_err(|_| Error::Check {
            message: format!(
                "the backup Job {job} should have added one set to the repository; new sets: {new:?}"
            ),
        })?;
        self.say(format!(
            "  backup Job {job} succeeded in {:.0}s: pgBackRest set {label}",
            began.elapsed().as_secs_f64()
        ));
        Ok(label)
    }

    /// Follows the restore (uid `uid`) to its end, printing its phase and steps as they
    /// change, and approving it as QA and the Product Owner when it waits for them.
    async fn follow_restore(
        &mut self,
        restores: &Api<ListaCompraRestore>,
        uid: &str,
    ) -> Result<ListaCompraRestore> {
        let began = Instant::now();
        let mut approved = false;
        let mut last = (None, None);
        let mut restoring = false;
        loop {
            self.runner_events();
            let restore = restores.get(RESTORE).await.map_err(|source| Error::Kube {
                action: format!("reading the restore {RESTORE}"),
                source,
            })?;
            let release = self.stack.release().await?.status.unwrap_or_default();
            // The release enters Restoring; [`Self::returned`] sees it leave.
            if !restoring && release.phase == Some(Phase::Restoring) {
                let serving = release.stable_version.clone().unwrap_or_default();
                let phase = phase_name(release.phase);
                self.timeline
                    .phases
                    .push((self.started.elapsed(), serving, phase.clone()));
                self.say(format!("release {RELEASE}: {phase}"));
                restoring = true;
            }
            let status = restore.status.clone().unwrap_or_default();
            let now = (status.phase, status.step);
            if now != last {
                let phase = status.phase.map_or("-".to_owned(), |p| format!("{p:?}"));
                let what = match status.step {
                    Some(step) => format!("{phase}, step {step:?}"),
                    None => phase,
                };
                let message = status.message.as_deref().map(|m| format!(": {m}"));
                self.say(format!(
                    "restore {RESTORE} {what}{}",
                    message.unwrap_or_default()
                ));
                last = now;
            }
            if status.phase == Some(RestorePhase::Pending)
                && !approved
                && status
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("approval"))
            {
                self.approve_restore(&release, uid).await?;
                approved = true;
            }
            if status.completion_time.is_some() {
                for step in &status.steps {
                    let took = step
                        .completion_time
                        .as_ref()
                        .map(|end| end.0.duration_since(step.start_time.0).as_secs_f64());
                    self.say(format!(
                        "  {:?}: {}",
                        step.step,
                        took.map_or("no end".to_owned(), |s| format!("{s:.0}s"))
                    ));
                }
                self.timeline.end = self.started.elapsed();
                self.summary.releases.push(format!(
                    "restore {RESTORE}: {} in {:.0}s",
                    status.phase.map_or("-".to_owned(), |p| format!("{p:?}")),
                    began.elapsed().as_secs_f64()
                ));
                return Ok(restore);
            }
            check(began.elapsed() < RESTORE_TIMEOUT, || {
                format!("the restore did not end within {RESTORE_TIMEOUT:?}: {status:#?}")
            })?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// The release's status once it left `Restoring` (it records the restore's end after
    /// the restore does), printing its phase.
    async fn returned(&mut self) -> Result<listacompra_crds::ListaCompraReleaseStatus> {
        let began = Instant::now();
        loop {
            let status = self.stack.release().await?.status.unwrap_or_default();
            if status.phase != Some(Phase::Restoring) {
                let phase = phase_name(status.phase);
                let serving = status.stable_version.clone().unwrap_or_default();
                self.timeline
                    .phases
                    .push((self.started.elapsed(), serving, phase.clone()));
                self.say(format!("release {RELEASE}: {phase}"));
                return Ok(status);
            }
            check(began.elapsed() < Duration::from_secs(60), || {
                format!("the release is still Restoring 60 s after its restore ended: {status:#?}")
            })?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// QA and the Product Owner approve the restore (uid `uid`), each as their own user.
    async fn approve_restore(
        &mut self,
        release: &listacompra_crds::ListaCompraReleaseStatus,
        uid: &str,
    ) -> Result<()> {
        let (Some(version), Some(attempt)) = (release.current_version.clone(), release.attempt)
        else {
            return Err(Error::Check {
                message: format!(
                    "a release without a version or attempt to approve against: {release:#?}"
                ),
            });
        };
        let Some(approvers) = &self.approvers else {
            return Err(Error::Check {
                message: "nobody to approve the restore".to_owned(),
            });
        };
        let mut lines = Vec::new();
        for role in APPROVAL_ROLES {
            let user = approvers
                .approve_restore(RELEASE, &version, attempt, role, (RESTORE, uid))
                .await?;
            lines.push(format!(
                "  approved by {user} as {role} (restore {RESTORE})"
            ));
        }
        for line in lines {
            self.say(line);
        }
        Ok(())
    }
}
