//! DID inventory: CSV parsing and batch import.
//!
//! The CSV's first column is the number (E.164, `+` optional); a header row is recognised and
//! skipped; further columns are ignored. Importing is idempotent: numbers already in the
//! inventory are counted as duplicates and left untouched (never moved between batches, since
//! they may already be assigned).

use serde::Serialize;

use crate::db::Db;
use crate::error::ApiResult;
use crate::util::E164;

/// Outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Numbers added.
    pub imported: u64,
    /// Numbers already present.
    pub duplicates: u64,
}

/// A CSV row that is not a number.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// Unreadable CSV.
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A row whose first field is not an E.164 number.
    #[error("line {line}: not an E.164 number")]
    BadNumber {
        /// 1-based line.
        line: u64,
    },
}

/// Reads numbers from CSV text.
pub fn parse_csv(reader: impl std::io::Read) -> Result<Vec<E164>, CsvError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let line = rec.position().map(|p| p.line()).unwrap_or(i as u64 + 1);
        let Some(first) = rec.get(0) else { continue };
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        match E164::parse(first) {
            Some(n) => out.push(n),
            // A header row: the first line with letters in it.
            None if i == 0 && first.chars().any(|c| c.is_ascii_alphabetic()) => {}
            None => return Err(CsvError::BadNumber { line }),
        }
    }
    Ok(out)
}

/// Adds numbers to the inventory under `batch` with `pricing`, in one transaction.
pub async fn import(
    db: &Db,
    batch: &str,
    pricing: &str,
    numbers: &[E164],
    now: i64,
) -> ApiResult<ImportReport> {
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO did_batches (name, pricing, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(batch)
    .bind(pricing)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let mut report = ImportReport::default();
    for n in numbers {
        let r = sqlx::query(
            "INSERT INTO dids (number, batch, pricing, imported_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (number) DO NOTHING",
        )
        .bind(n.digits())
        .bind(batch)
        .bind(pricing)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            report.imported += 1;
        } else {
            report.duplicates += 1;
        }
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_and_extra_columns() {
        let text = "number,region\n+12065550100,WA\n12065550101\n# comment\n\n";
        let got: Vec<String> = parse_csv(text.as_bytes())
            .expect("valid")
            .iter()
            .map(|n| n.plus())
            .collect();
        assert_eq!(got, ["+12065550100", "+12065550101"]);
    }

    #[test]
    fn csv_bad_row_names_line() {
        let err = parse_csv("+12065550100\nnot-a-number\n".as_bytes()).expect_err("must fail");
        assert!(matches!(err, CsvError::BadNumber { line: 2 }), "{err:?}");
    }
}
