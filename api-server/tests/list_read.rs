//! `GET /v1/lists/{id}` reads a list, its items and its members in one query
//! (`store::LIST_DETAIL_QUERY`: one row per item, then per member, beside the list's row).
//! These tests hold its answer to what the tables hold, read one table at a time as typed
//! values, over rows drawn from a seed: items in shuffled positions, doubles of every form
//! (zeros of both signs, NaN, the infinities, subnormals, random bit patterns), timestamps
//! of years 1 to 9999 with no fraction, milliseconds or microseconds, text with every control
//! character, quotes, backslashes and non-ASCII, lists with no items, members and pending
//! invitations. The seed is printed; `LC_LIST_READ_SEED=<seed>` replays one.

mod common;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use listacompra_api::domain::{ItemView, MemberView, Role};
use listacompra_api::ports::{Store, TokenSubject};
use listacompra_api::store::PgStore;
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// The claim of a token issued to `user` at the token version every drawn user has (0).
fn reader(user: Uuid) -> TokenSubject {
    TokenSubject { user, version: 0 }
}

/// Lists drawn per run, and items per list.
const LISTS: usize = 8;
const ITEMS: usize = 40;

#[tokio::test]
async fn a_list_read_answers_what_the_tables_hold_in_order() -> Result<()> {
    let (seed, replay) = common::seed("LC_LIST_READ_SEED")?;
    let mut rng = Pcg64::seed_from_u64(seed);
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    let store = PgStore::new(db.pool.clone());
    for _ in 0..LISTS {
        let (owner, list) = drawn_list(&db.pool, &mut rng, any_double).await?;
        let detail = store
            .list_detail(reader(owner), list)
            .await?
            .context("the owner reads the list")?;
        // As JSON: NaN is `null` there, and the bits of every other double are kept
        // (serde_json writes the shortest text that reads back as the same double).
        let same = |read: String, held: String, what: &str| {
            assert_eq!(read, held, "{replay}: the list read answers other {what}");
        };
        same(
            serde_json::to_string(&detail.items)?,
            serde_json::to_string(&typed_items(&db.pool, list).await?)?,
            "items",
        );
        same(
            serde_json::to_string(&detail.members)?,
            serde_json::to_string(&typed_members(&db.pool, list).await?)?,
            "members",
        );
        assert_eq!(detail.list.id, list, "{replay}");
        assert_eq!(detail.list.role, Role::Owner, "{replay}");
        // A member reads the same list, with the member's role.
        let member: Uuid = sqlx::query_scalar(
            "SELECT user_id FROM list_members WHERE list_id = $1 AND role = 'member'",
        )
        .bind(list)
        .fetch_one(&db.pool)
        .await?;
        let as_member = store
            .list_detail(reader(member), list)
            .await?
            .context("a member reads the list")?;
        assert_eq!(as_member.list.role, Role::Member, "{replay}");
        assert_eq!(
            serde_json::to_string(&as_member.items)?,
            serde_json::to_string(&detail.items)?,
            "{replay}: a member reads other items than the owner"
        );
        let stranger = Uuid::new_v4();
        assert!(
            store.list_detail(reader(stranger), list).await?.is_none(),
            "{replay}: someone who is not a member reads the list"
        );
        // A token of another version than the owner's current one (revoked by a logout, or
        // never issued) reads nothing.
        for version in [-1, 1] {
            let revoked = TokenSubject {
                user: owner,
                version,
            };
            assert!(
                store.list_detail(revoked, list).await?.is_none(),
                "{replay}: a token of version {version} reads the list"
            );
        }
    }
    Ok(())
}

/// A time chrono cannot hold (PostgreSQL's infinities, years past 262143) makes the list
/// read an error: never an answer without that item, never a panic; years chrono can hold
/// beyond 1 to 9999 are answered as they are.
#[tokio::test]
async fn an_item_whose_time_the_api_cannot_hold_fails_the_read_and_is_never_left_out() -> Result<()>
{
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    let store = PgStore::new(db.pool.clone());
    let mut rng = Pcg64::seed_from_u64(7);
    for (time, readable) in [
        ("infinity", false),
        ("-infinity", false),
        ("270000-01-01T00:00:00Z", false),
        ("10000-01-01T00:00:00Z", true),
        ("0001-01-01T00:00:00Z BC", true),
    ] {
        let (owner, list) = drawn_list(&db.pool, &mut rng, any_double).await?;
        sqlx::query(
            "INSERT INTO items (id, list_id, name, position, created_at) \
             VALUES ($1, $2, 'x', 1000, $3::timestamptz)",
        )
        .bind(Uuid::new_v4())
        .bind(list)
        .bind(time)
        .execute(&db.pool)
        .await?;
        let read = store.list_detail(reader(owner), list).await;
        if readable {
            let items = read?.context("the owner reads the list")?.items;
            let held = typed_items(&db.pool, list).await?;
            assert_eq!(
                serde_json::to_string(&items)?,
                serde_json::to_string(&held)?,
                "a list with an item created at {time}"
            );
        } else {
            assert!(
                read.is_err(),
                "a list with an item created at {time} was read: {read:?}"
            );
        }
    }
    Ok(())
}

/// A list with an owner, a member, an invitation and [`ITEMS`] items, written straight to
/// the database; the owner and the list.
async fn drawn_list(
    pool: &PgPool,
    rng: &mut Pcg64,
    quantity: impl Fn(&mut Pcg64) -> f64,
) -> Result<(Uuid, Uuid)> {
    let (owner, list) = common::user_with_list(pool).await?;
    let member = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
        .bind(member)
        .bind(format!("{}@{member}.example", text(rng)))
        .execute(pool)
        .await?;
    // Distinct times, so that the order (role, then time added) is one.
    let added = time(rng);
    for (user, role, at) in [
        (owner, "owner", added),
        (member, "member", added + chrono::Duration::microseconds(1)),
    ] {
        sqlx::query(
            "INSERT INTO list_members (list_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(list)
        .bind(user)
        .bind(role)
        .bind(at)
        .execute(pool)
        .await?;
    }
    sqlx::query(
        "INSERT INTO list_invitations (list_id, user_id, email, role, invited_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(list)
    .bind(Uuid::new_v4())
    .bind(text(rng))
    .bind(if rng.next_u64().is_multiple_of(2) {
        "owner"
    } else {
        "member"
    })
    .bind(added + chrono::Duration::microseconds(2))
    .execute(pool)
    .await?;
    // Distinct positions, so that the order (position, then creation) is one; some lists
    // have no items.
    let count = if rng.next_u64().is_multiple_of(4) {
        0
    } else {
        ITEMS as i32
    };
    let mut positions: Vec<i32> = (0..count).map(|p| p * 3 - 7).collect();
    for i in (1..positions.len()).rev() {
        positions.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    for position in positions {
        sqlx::query(
            "INSERT INTO items (id, list_id, name, quantity, unit, category, note, checked, \
             position, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(Uuid::new_v4())
        .bind(list)
        .bind(text(rng))
        .bind(quantity(rng))
        .bind(maybe_text(rng))
        .bind(maybe_text(rng))
        .bind(maybe_text(rng))
        .bind(rng.next_u64().is_multiple_of(2))
        .bind(position)
        .bind(time(rng))
        .bind(time(rng))
        .execute(pool)
        .await?;
    }
    Ok((owner, list))
}

/// A double drawn so that every kind comes up: the boundaries of serde_json's decimal and
/// exponent forms and their neighbours, zeros, NaN and the infinities, subnormals,
/// integers, quantities up to the API's cap, and random doubles of every magnitude and sign.
fn any_double(rng: &mut Pcg64) -> f64 {
    const EDGES: [f64; 15] = [
        1e-5,
        1e-4,
        1.0,
        100_000.0,
        1e-300,
        2.5e-7,
        0.1,
        1.0 / 3.0,
        123_456.789,
        1e15,
        1e14,
        f64::MIN_POSITIVE,
        1_234_567_890_123_456.7,
        9_007_199_254_740_991.0,
        4_503_599_627_370_497.5,
    ];
    let q = match rng.next_u64() % 7 {
        0 => match rng.next_u64() % 4 {
            0 => f64::from_bits(1 + rng.next_u64() % 3),
            1 => [0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
                [(rng.next_u64() % 5) as usize],
            _ => {
                let edge = EDGES[(rng.next_u64() % EDGES.len() as u64) as usize];
                // The edge, or the double next to it on either side.
                match rng.next_u64() % 3 {
                    0 => edge,
                    1 => edge.next_up(),
                    _ => edge.next_down(),
                }
            }
        },
        1 => (1 + rng.next_u64() % 100_000) as f64,
        2 => (rng.next_u64() % 10_000_000) as f64 / 100.0,
        3 => loop {
            let q = f64::from_bits(rng.next_u64());
            if q.is_finite() {
                break q;
            }
        },
        _ => {
            // Uniform in magnitude from 10^-8 to 10^16, 17 significant digits.
            let exponent = (rng.next_u64() % 25) as i32 - 8;
            let mantissa = 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 9.0;
            mantissa * 10f64.powi(exponent)
        }
    };
    if rng.next_u64().is_multiple_of(8) {
        -q
    } else {
        q
    }
}

/// An instant of years 1 to 9999, with no fraction, whole milliseconds or microseconds.
fn time(rng: &mut Pcg64) -> DateTime<Utc> {
    const FIRST: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let seconds = match rng.next_u64() % 2 {
        0 => FIRST + (rng.next_u64() % (LAST - FIRST + 1) as u64) as i64,
        // Recent, as the API writes them.
        _ => 1_700_000_000 + (rng.next_u64() % 100_000_000) as i64,
    };
    let micros = match rng.next_u64() % 4 {
        0 => 0,
        1 => (rng.next_u64() % 1000) * 1000,
        2 => 1 + rng.next_u64() % 999,
        _ => rng.next_u64() % 1_000_000,
    };
    DateTime::from_timestamp(seconds, (micros * 1000) as u32).unwrap_or_default()
}

/// Text of 0 to 12 characters: letters, every control character PostgreSQL accepts,
/// quotes, backslashes, slashes, DEL, the JSON-dangerous line separators and non-ASCII.
fn text(rng: &mut Pcg64) -> String {
    const OTHERS: [char; 12] = [
        '"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', 'ñ', '☕', '🍞', '<', '&', '\'',
    ];
    let len = rng.next_u64() % 13;
    (0..len)
        .map(|_| match rng.next_u64() % 4 {
            0 => char::from_u32(1 + (rng.next_u64() % 31) as u32).unwrap_or('x'),
            1 => OTHERS[(rng.next_u64() % OTHERS.len() as u64) as usize],
            _ => char::from(b'a' + (rng.next_u64() % 26) as u8),
        })
        .collect()
}

fn maybe_text(rng: &mut Pcg64) -> Option<String> {
    (!rng.next_u64().is_multiple_of(3)).then(|| text(rng))
}

/// The list's items read as typed values, in the API's order.
async fn typed_items(pool: &PgPool, list: Uuid) -> Result<Vec<ItemView>> {
    let rows = sqlx::query(
        "SELECT id, name, quantity, unit, category, note, checked, position, created_at, \
         updated_at FROM items WHERE list_id = $1 ORDER BY position, created_at, id",
    )
    .bind(list)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ItemView {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                quantity: r.try_get("quantity")?,
                unit: r.try_get("unit")?,
                category: r.try_get("category")?,
                note: r.try_get("note")?,
                checked: r.try_get("checked")?,
                position: r.try_get("position")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

/// The list's members and invitations read as typed values, in the API's order.
async fn typed_members(pool: &PgPool, list: Uuid) -> Result<Vec<MemberView>> {
    let rows = sqlx::query(
        "SELECT user_id, email, role FROM ( \
           SELECT o.user_id, u.email, o.role, o.added_at FROM list_members o \
             JOIN users u ON u.id = o.user_id WHERE o.list_id = $1 \
           UNION ALL \
           SELECT user_id, email, role, invited_at FROM list_invitations WHERE list_id = $1 \
         ) AS e ORDER BY role DESC, added_at, user_id",
    )
    .bind(list)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            Ok(MemberView {
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                role: Role::parse(&role).context("a stored role")?,
            })
        })
        .collect()
}

/// The same for a suggestion request's times, the other reads of stored times.
#[tokio::test]
async fn a_suggestion_whose_time_the_api_cannot_hold_is_an_error_not_a_panic() -> Result<()> {
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    let store = PgStore::new(db.pool.clone());
    for (created, completed) in [("infinity", "now"), ("now", "infinity")] {
        let (owner, list) = common::user_with_list(&db.pool).await?;
        sqlx::query("INSERT INTO list_members (list_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(list)
            .bind(owner)
            .execute(&db.pool)
            .await?;
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO suggestion_requests (id, list_id, requested_by, status, created_at, \
             completed_at) VALUES ($1, $2, $3, 'done', $4::timestamptz, $5::timestamptz)",
        )
        .bind(id)
        .bind(list)
        .bind(owner)
        .bind(created)
        .bind(completed)
        .execute(&db.pool)
        .await?;
        let read = store.suggestion_request(owner, list, id).await;
        assert!(
            read.is_err(),
            "a suggestion created at {created} and completed at {completed} was read: {read:?}"
        );
    }
    Ok(())
}
