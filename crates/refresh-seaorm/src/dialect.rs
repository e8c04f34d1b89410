//! The SQL differences between the backends: placeholders, the database
//! clock, and whether `RETURNING` exists.

use sea_orm::{DbBackend, Statement, Value};

/// The database clock as unix milliseconds, one value per statement.
const NOW_SQLITE: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
/// `statement_timestamp()`: one clock for every client, constant within the
/// statement, taken when the statement starts (expiries judged by it are
/// never later than by the wall clock when the row is read).
const NOW_POSTGRES: &str =
    "CAST(floor(extract(epoch from statement_timestamp()) * 1000) AS BIGINT)";
/// MySQL's clock at microsecond precision.
const NOW_MYSQL: &str = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000 AS SIGNED)";

/// One backend's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dialect(pub(crate) DbBackend);

impl Dialect {
    /// The database clock expression (unix milliseconds).
    pub(crate) fn now(self) -> &'static str {
        match self.0 {
            DbBackend::Sqlite => NOW_SQLITE,
            DbBackend::Postgres => NOW_POSTGRES,
            DbBackend::MySql => NOW_MYSQL,
        }
    }

    /// Whether `INSERT ... ON CONFLICT ... RETURNING` and `UPDATE ...
    /// RETURNING` exist (SQLite ≥ 3.35, PostgreSQL; not MySQL).
    pub(crate) fn has_returning(self) -> bool {
        !matches!(self.0, DbBackend::MySql)
    }

    /// A statement from `template`, written with `$1..$n` placeholders and
    /// `{now}` for the database clock. MySQL gets `?` placeholders with the
    /// values reordered (and repeated) to match.
    pub(crate) fn stmt(self, template: &str, values: Vec<Value>) -> Statement {
        let sql = template.replace("{now}", self.now());
        if self.0 != DbBackend::MySql {
            return Statement::from_sql_and_values(self.0, sql, values);
        }
        let mut out = String::with_capacity(sql.len());
        let mut ordered = Vec::with_capacity(values.len());
        let mut chars = sql.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c == '$' {
                let mut digits = String::new();
                while let Some((_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if let Ok(n) = digits.parse::<usize>()
                    && let Some(value) = values.get(n.wrapping_sub(1))
                {
                    out.push('?');
                    ordered.push(value.clone());
                    continue;
                }
                out.push('$');
                out.push_str(&digits);
            } else {
                out.push(c);
            }
        }
        Statement::from_sql_and_values(self.0, out, ordered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_placeholders_follow_their_use() {
        let stmt = Dialect(DbBackend::MySql).stmt(
            "SELECT $2, $1, $2 WHERE x < {now}",
            vec![Value::from(1_i64), Value::from("b")],
        );
        assert_eq!(stmt.sql, format!("SELECT ?, ?, ? WHERE x < {NOW_MYSQL}"));
        assert_eq!(
            stmt.values.expect("values").0,
            vec![Value::from("b"), Value::from(1_i64), Value::from("b")]
        );
        let pg = Dialect(DbBackend::Postgres).stmt("SELECT $1", vec![Value::from(1_i64)]);
        assert_eq!(pg.sql, "SELECT $1");
    }
}
