//! segflow-datagen: synthetic retail invoice lines, realistic and dirty, for examples,
//! tests and benchmarks.
//!
//! The columns are those of the UCI "Online Retail" export (`InvoiceNo, StockCode,
//! Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country`), so one set of SQL
//! steps cleans both. Customers are simulated one at a time (one-off, regular, loyal and
//! churned buyers; skewed basket sizes and prices; a November peak), and a small share of
//! rows is made dirty the way real exports are: guest orders without a customer id,
//! cancellations (`C` invoices, negative quantities), exact duplicate lines, unparseable
//! dates, zero prices, stock adjustments and quantity outliers.
//!
//! Output is deterministic for a seed and streamed in batches: memory does not grow with
//! the number of rows. A few scripted customers (ids 90001-90004) with hand-written
//! histories come first so tests can check derived values exactly; see [`SCRIPTED`].

mod catalog;
mod scripted;

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Exp, LogNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;

use catalog::{Catalog, Product};
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
pub use scripted::SCRIPTED;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The writer stopped taking batches (it failed; its error is the one to report).
    #[error("the writer stopped")]
    WriterGone,
}

pub type Result<T, E = GenerateError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Parquet,
}

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Invoice lines to write, exactly.
    pub rows: u64,
    pub seed: u64,
    /// First and last day of trading.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Rows per Arrow batch (memory use is about this many rows).
    pub batch_rows: usize,
}

impl GeneratorConfig {
    pub fn new(rows: u64, seed: u64) -> Self {
        GeneratorConfig {
            rows,
            seed,
            start: NaiveDate::from_ymd_opt(2010, 12, 1).expect("valid date"),
            end: NaiveDate::from_ymd_opt(2011, 12, 9).expect("valid date"),
            batch_rows: 8192,
        }
    }
}

/// The columns, all nullable as an export would be; quantity and price typed, the date kept
/// as text because real exports carry unparseable ones.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("InvoiceNo", DataType::Utf8, true),
        Field::new("StockCode", DataType::Utf8, true),
        Field::new("Description", DataType::Utf8, true),
        Field::new("Quantity", DataType::Int64, true),
        Field::new("InvoiceDate", DataType::Utf8, true),
        Field::new("UnitPrice", DataType::Float64, true),
        Field::new("CustomerID", DataType::Utf8, true),
        Field::new("Country", DataType::Utf8, true),
    ]))
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    /// Customers whose lines were (at least partly) written, scripted ones included.
    pub customers: u64,
    pub invoices: u64,
}

/// Writes `config.rows` lines to `out` in `format`, batch by batch.
pub fn write(
    out: impl Write + Send,
    format: OutputFormat,
    config: &GeneratorConfig,
) -> Result<Summary> {
    match format {
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            generate(config, |batch| Ok(writer.write(&batch)?))
        }
        OutputFormat::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema(), None)?;
            let summary = generate(config, |batch| Ok(writer.write(&batch)?))?;
            writer.close()?;
            Ok(summary)
        }
    }
}

/// Writes `config.rows` lines to `path` in `store`, streaming: rows are generated on a
/// blocking thread while earlier batches upload (a multipart upload on object stores), so
/// memory holds a few batches and a Parquet row group whatever the number of rows. A
/// failed write is aborted, leaving no object behind.
pub async fn write_to_store(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    format: OutputFormat,
    config: &GeneratorConfig,
) -> Result<Summary> {
    let (batches, mut received) = tokio::sync::mpsc::channel::<RecordBatch>(4);
    let config = config.clone();
    let generating = tokio::task::spawn_blocking(move || {
        generate(&config, |batch| {
            batches
                .blocking_send(batch)
                .map_err(|_| GenerateError::WriterGone)
        })
    });
    let mut out = BufWriter::new(store, path);
    let written = async {
        match format {
            OutputFormat::Parquet => {
                let properties = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build();
                let mut writer = parquet::arrow::AsyncArrowWriter::try_new(
                    &mut out,
                    schema(),
                    Some(properties),
                )?;
                while let Some(batch) = received.recv().await {
                    writer.write(&batch).await?;
                }
                // Closing the Parquet writer also completes the upload.
                writer.close().await?;
            }
            OutputFormat::Csv => {
                let mut header = true;
                let mut text = Vec::new();
                while let Some(batch) = received.recv().await {
                    text.clear();
                    arrow::csv::WriterBuilder::new()
                        .with_header(header)
                        .build(&mut text)
                        .write(&batch)?;
                    header = false;
                    out.write_all(&text).await?;
                }
                out.shutdown().await?;
            }
        }
        Ok::<_, GenerateError>(())
    }
    .await;
    drop(received);
    let generated = generating
        .await
        .map_err(|error| GenerateError::Io(std::io::Error::other(error)))?;
    match (written, generated) {
        (Ok(()), Ok(summary)) => Ok(summary),
        (Err(error), _) | (Ok(()), Err(error)) => {
            if let Err(abort) = out.abort().await {
                tracing::debug!(%abort, "aborting the failed upload");
            }
            Err(error)
        }
    }
}

/// Calls `sink` with each batch of generated rows.
pub fn generate(
    config: &GeneratorConfig,
    mut sink: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<Summary> {
    let mut generator = Generator::new(config);
    for customer in SCRIPTED {
        for line in customer.lines {
            if generator.full() {
                break;
            }
            generator.push_scripted(customer.id, line);
        }
        generator.summary.customers += 1;
        generator.flush_if_full(&mut sink)?;
    }
    let mut customer_id = 12346u64;
    while !generator.full() {
        generator.simulate_customer(customer_id);
        customer_id += 1;
        generator.flush_if_full(&mut sink)?;
    }
    generator.flush(&mut sink)?;
    Ok(generator.summary)
}

/// One invoice line before it is written.
#[derive(Clone)]
struct Line {
    invoice: String,
    product: Product,
    quantity: i64,
    at: String,
    price: f64,
    customer: Option<u64>,
    country: &'static str,
}

struct Generator<'a> {
    config: &'a GeneratorConfig,
    rng: Xoshiro256PlusPlus,
    catalog: Catalog,
    next_invoice: u64,
    summary: Summary,
    invoice_no: StringBuilder,
    stock_code: StringBuilder,
    description: StringBuilder,
    quantity: Int64Builder,
    invoice_date: StringBuilder,
    unit_price: Float64Builder,
    customer_id: StringBuilder,
    country: StringBuilder,
    buffered: usize,
}

const COUNTRIES: &[(&str, u32)] = &[
    ("United Kingdom", 880),
    ("Germany", 25),
    ("France", 22),
    ("EIRE", 18),
    ("Spain", 8),
    ("Netherlands", 8),
    ("Belgium", 6),
    ("Switzerland", 6),
    ("Portugal", 5),
    ("Australia", 4),
    ("Norway", 4),
    ("Italy", 4),
    ("Channel Islands", 3),
    ("Finland", 3),
    ("Cyprus", 2),
    ("Sweden", 2),
];

const BAD_DATES: &[&str] = &[
    "2011-02-30 10:15:00",
    "31/12/2011 10:15",
    "2011-13-01 09:00:00",
    "not recorded",
    "",
];

impl<'a> Generator<'a> {
    fn new(config: &'a GeneratorConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let catalog = Catalog::generate(&mut rng, 480);
        Generator {
            config,
            rng,
            catalog,
            next_invoice: 536365,
            summary: Summary::default(),
            invoice_no: StringBuilder::new(),
            stock_code: StringBuilder::new(),
            description: StringBuilder::new(),
            quantity: Int64Builder::new(),
            invoice_date: StringBuilder::new(),
            unit_price: Float64Builder::new(),
            customer_id: StringBuilder::new(),
            country: StringBuilder::new(),
            buffered: 0,
        }
    }

    fn full(&self) -> bool {
        self.summary.rows >= self.config.rows
    }

    fn push_scripted(&mut self, customer: u64, line: &scripted::ScriptedLine) {
        self.push(Line {
            invoice: line.invoice.to_string(),
            product: Product {
                code: line.stock_code.to_string(),
                description: line.description.to_string(),
                price: line.price,
            },
            quantity: line.quantity,
            at: line.at.to_string(),
            price: line.price,
            customer: Some(customer),
            country: "United Kingdom",
        });
    }

    fn push(&mut self, line: Line) {
        if self.full() {
            return;
        }
        self.invoice_no.append_value(&line.invoice);
        self.stock_code.append_value(&line.product.code);
        self.description.append_value(&line.product.description);
        self.quantity.append_value(line.quantity);
        self.invoice_date.append_value(&line.at);
        self.unit_price.append_value(line.price);
        match line.customer {
            Some(id) => self.customer_id.append_value(id.to_string()),
            None => self.customer_id.append_null(),
        }
        self.country.append_value(line.country);
        self.summary.rows += 1;
        self.buffered += 1;
    }

    fn flush_if_full(&mut self, sink: &mut impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        if self.buffered >= self.config.batch_rows {
            self.flush(sink)?;
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.invoice_no.finish()),
                Arc::new(self.stock_code.finish()),
                Arc::new(self.description.finish()),
                Arc::new(self.quantity.finish()),
                Arc::new(self.invoice_date.finish()),
                Arc::new(self.unit_price.finish()),
                Arc::new(self.customer_id.finish()),
                Arc::new(self.country.finish()),
            ],
        )?;
        self.buffered = 0;
        sink(batch)
    }

    fn pick_country(&mut self) -> &'static str {
        let total: u32 = COUNTRIES.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.gen_range(0..total);
        for (name, weight) in COUNTRIES {
            if roll < *weight {
                return name;
            }
            roll -= weight;
        }
        COUNTRIES[0].0
    }

    /// A day in the trading period, drawn more often in the autumn peak.
    fn seasonal_day(&mut self, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        let span = (to - from).num_days().max(0);
        loop {
            let day = from + Duration::days(self.rng.gen_range(0..=span));
            let weight = match day.month() {
                11 => 1.0,
                9 | 10 | 12 => 0.75,
                _ => 0.55,
            };
            if self.rng.gen_bool(weight) {
                return day;
            }
        }
    }

    fn timestamp(&mut self, day: NaiveDate) -> NaiveDateTime {
        let minutes = self.rng.gen_range(8 * 60..20 * 60);
        day.and_time(NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).expect("valid time"))
    }

    /// Order days for one customer: how many and when depends on what kind of buyer it is.
    fn order_days(&mut self) -> Vec<NaiveDate> {
        let (start, end) = (self.config.start, self.config.end);
        let span = (end - start).num_days();
        let roll: f64 = self.rng.r#gen();
        let (orders, first, last) = if roll < 0.30 {
            // one-off buyer
            let day = self.seasonal_day(start, end);
            (1, day, day)
        } else if roll < 0.75 {
            // regular: a few orders from some point on
            let first = self.seasonal_day(start, end - Duration::days(30));
            (self.rng.gen_range(2..=8), first, end)
        } else if roll < 0.90 {
            // loyal: many orders, most of the year
            let first = start + Duration::days(self.rng.gen_range(0..span / 4));
            (self.rng.gen_range(10..=40), first, end)
        } else {
            // churned: a few orders, then nothing in the last months
            let first = start + Duration::days(self.rng.gen_range(0..span / 3));
            let last = start + Duration::days(span / 2);
            (self.rng.gen_range(2..=6), first, last.max(first))
        };
        let mut days = vec![first];
        let gap_mean = ((last - first).num_days() as f64 / orders as f64).max(1.0);
        let gaps = Exp::new(1.0 / gap_mean).expect("positive rate");
        let mut day = first;
        for _ in 1..orders {
            let gap = gaps.sample(&mut self.rng).round() as i64;
            // A gap of 0 is a second order on the same day: it must count once per day.
            day += Duration::days(gap);
            if day > last {
                break;
            }
            days.push(day);
        }
        days
    }

    fn simulate_customer(&mut self, customer_id: u64) {
        self.summary.customers += 1;
        let country = self.pick_country();
        let wholesale = self.rng.gen_bool(0.05);
        let days = self.order_days();
        for day in days {
            let guest = self.rng.gen_bool(0.12);
            let customer = (!guest).then_some(customer_id);
            let at = self.timestamp(day);
            self.invoice(customer, country, at, wholesale);
        }
    }

    fn invoice(
        &mut self,
        customer: Option<u64>,
        country: &'static str,
        at: NaiveDateTime,
        wholesale: bool,
    ) {
        self.summary.invoices += 1;
        let number = self.next_invoice;
        self.next_invoice += 1;
        let bad_date = self.rng.gen_bool(0.004);
        let at_text = if bad_date {
            BAD_DATES
                .choose(&mut self.rng)
                .copied()
                .unwrap_or("")
                .to_string()
        } else {
            at.format("%Y-%m-%d %H:%M:%S").to_string()
        };
        let lines = 1
            + (Exp::new(1.0 / 2.8)
                .expect("positive rate")
                .sample(&mut self.rng) as usize)
                .min(60);
        let mut written = Vec::new();
        for _ in 0..lines {
            let product = self.catalog.pick(&mut self.rng).clone();
            let mut quantity = *[1i64, 1, 2, 2, 3, 4, 6, 6, 12, 12, 24]
                .choose(&mut self.rng)
                .unwrap_or(&1);
            if wholesale {
                quantity *= 10;
            }
            let mut price = product.price;
            if self.rng.gen_bool(0.0008) {
                quantity = self.rng.gen_range(1_000..80_000);
            }
            if self.rng.gen_bool(0.004) {
                price = 0.0;
            }
            let line = Line {
                invoice: number.to_string(),
                product,
                quantity,
                at: at_text.clone(),
                price,
                customer,
                country,
            };
            let duplicate = self.rng.gen_bool(0.01);
            if duplicate {
                self.push(line.clone());
            }
            written.push((line.product.clone(), quantity, price));
            self.push(line);
        }
        if self.rng.gen_bool(0.003) {
            // A stock adjustment: negative quantity on an ordinary invoice, no price.
            let product = self.catalog.pick(&mut self.rng).clone();
            let quantity = -self.rng.gen_range(1..20);
            self.push(Line {
                invoice: number.to_string(),
                product: Product {
                    description: "damaged".to_string(),
                    ..product
                },
                quantity,
                at: at.format("%Y-%m-%d %H:%M:%S").to_string(),
                price: 0.0,
                customer: None,
                country,
            });
        }
        if self.rng.gen_bool(0.035) && !written.is_empty() {
            self.cancellation(customer, country, at, &written);
        }
    }

    /// A `C` invoice a few days later returning part of an order.
    fn cancellation(
        &mut self,
        customer: Option<u64>,
        country: &'static str,
        at: NaiveDateTime,
        written: &[(Product, i64, f64)],
    ) {
        let number = self.next_invoice;
        self.next_invoice += 1;
        let later = at + Duration::days(self.rng.gen_range(0..10)) + Duration::minutes(37);
        let returned = self.rng.gen_range(1..=written.len().min(2));
        for (product, quantity, price) in written.iter().take(returned) {
            let back = self.rng.gen_range(1..=*quantity.max(&1));
            self.push(Line {
                invoice: format!("C{number}"),
                product: product.clone(),
                quantity: -back,
                at: later.format("%Y-%m-%d %H:%M:%S").to_string(),
                price: *price,
                customer,
                country,
            });
        }
    }
}

/// Prices are drawn log-normally (most items cheap, a long tail of expensive ones).
fn draw_price(rng: &mut impl Rng) -> f64 {
    let price: f64 = LogNormal::new(0.9, 0.8)
        .expect("valid parameters")
        .sample(rng);
    (price.clamp(0.1, 300.0) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests;
