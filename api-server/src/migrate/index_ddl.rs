//! What a migration's SQL does to indexes, read from its text: enough to hold every migration
//! to the online rule (see [`crate::migrate`]) and to find the indexes a failed concurrent
//! build may have left behind. Not a SQL parser: it reads our own migrations, which keep one
//! statement per `;` and put comments on `--` lines.

/// One `CREATE INDEX` or `DROP INDEX` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDdl {
    /// `CREATE INDEX` (true) or `DROP INDEX` (false).
    pub create: bool,
    /// With `CONCURRENTLY`.
    pub concurrently: bool,
    /// The index names (a `DROP INDEX` may name several).
    pub names: Vec<String>,
    /// The table of a `CREATE INDEX`.
    pub table: Option<String>,
}

/// The statements of `sql`, without `--` comments and blank ones, lower-cased and with
/// whitespace collapsed.
pub fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The tables `sql` creates.
pub fn created_tables(sql: &str) -> Vec<String> {
    statements(sql)
        .iter()
        .filter_map(|s| {
            let rest = s.strip_prefix("create table ")?;
            let rest = rest.strip_prefix("if not exists ").unwrap_or(rest);
            rest.split([' ', '(']).next().map(unquote)
        })
        .collect()
}

/// The index statements of `sql`.
pub fn index_statements(sql: &str) -> Vec<IndexDdl> {
    statements(sql).iter().filter_map(|s| parse(s)).collect()
}

fn unquote(name: &str) -> String {
    name.trim_matches('"').to_owned()
}

fn parse(statement: &str) -> Option<IndexDdl> {
    let words: Vec<&str> = statement.split(' ').collect();
    let mut i = 0;
    let next_is = |w: &str, i: &mut usize| {
        let yes = words.get(*i) == Some(&w);
        if yes {
            *i += 1;
        }
        yes
    };
    let create = if next_is("create", &mut i) {
        next_is("unique", &mut i);
        true
    } else if next_is("drop", &mut i) {
        false
    } else {
        return None;
    };
    if !next_is("index", &mut i) {
        return None;
    }
    let concurrently = next_is("concurrently", &mut i);
    if create {
        if next_is("if", &mut i) {
            next_is("not", &mut i);
            next_is("exists", &mut i);
        }
        let name = (*words.get(i)?).to_owned();
        let (names, rest) = if name == "on" {
            (Vec::new(), i + 1)
        } else {
            (vec![unquote(&name)], i + 2)
        };
        let mut t = rest;
        if words.get(t) == Some(&"only") {
            t += 1;
        }
        let table = words
            .get(t)
            .map(|w| unquote(w.split('(').next().unwrap_or(w)));
        Some(IndexDdl {
            create,
            concurrently,
            names,
            table,
        })
    } else {
        if next_is("if", &mut i) {
            next_is("exists", &mut i);
        }
        let names = words[i..]
            .iter()
            .take_while(|w| !["cascade", "restrict"].contains(w))
            .flat_map(|w| w.split(','))
            .filter(|w| !w.is_empty())
            .map(unquote)
            .collect();
        Some(IndexDdl {
            create,
            concurrently,
            names,
            table: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_index_statements_and_ignores_comments() {
        let sql = "-- no-transaction\n-- CREATE INDEX x ON y (z);\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"a_idx\" ON ONLY t (lower(email))\n  WHERE x;\n";
        assert_eq!(
            index_statements(sql),
            [IndexDdl {
                create: true,
                concurrently: true,
                names: vec!["a_idx".to_owned()],
                table: Some("t".to_owned()),
            }]
        );
        assert_eq!(statements(sql).len(), 1);
        let sql = "CREATE TABLE t (id int);\nCREATE INDEX t_idx ON t(id);\nDROP INDEX IF EXISTS a, b CASCADE;";
        assert_eq!(created_tables(sql), ["t"]);
        let got = index_statements(sql);
        assert_eq!(got.len(), 2);
        assert!(!got[0].concurrently && got[0].table.as_deref() == Some("t"));
        assert!(!got[1].create && got[1].names == ["a", "b"]);
        assert_eq!(
            index_statements("drop index concurrently if exists x")[0].names,
            ["x"]
        );
        assert!(index_statements("CREATE TABLE t (id int)").is_empty());
    }
}
