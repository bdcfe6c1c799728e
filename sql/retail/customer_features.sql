-- One row per customer with at least one purchase day before the as-of date.
--
-- RFM summary as lifetimes' summary_data_from_transaction_data (and PyMC-Marketing):
--   frequency      = purchase days after the first one (repeat days)
--   recency        = days from the first to the last purchase day
--   T              = days from the first purchase day to the as-of date
--   monetary_value = mean spend on repeat days, 0 without repeat days
-- plus days_since_last_purchase (T - recency, "recency" as marketers mean it),
-- total_spend over all purchase days and refunded value.
WITH days AS (
    SELECT
        customer_id,
        purchase_day,
        spend,
        min(purchase_day) OVER (PARTITION BY customer_id) AS first_day
    FROM daily_purchases
),
summary AS (
    SELECT
        customer_id,
        count(*) - 1 AS frequency,
        min(purchase_day) AS first_purchase,
        max(purchase_day) AS last_purchase,
        sum(spend) AS total_spend,
        coalesce(sum(CASE WHEN purchase_day > first_day THEN spend END), 0) AS repeat_spend
    FROM days
    GROUP BY customer_id
)
SELECT
    s.customer_id,
    s.frequency,
    CAST(s.last_purchase - s.first_purchase AS BIGINT) AS recency,
    CAST(DATE '${as_of}' - s.first_purchase AS BIGINT) AS "T",
    CAST(CASE WHEN s.frequency > 0 THEN s.repeat_spend / s.frequency ELSE 0 END AS DOUBLE) AS monetary_value,
    CAST(DATE '${as_of}' - s.last_purchase AS BIGINT) AS days_since_last_purchase,
    CAST(s.total_spend AS DOUBLE) AS total_spend,
    CAST(coalesce(r.refund_value, 0) AS DOUBLE) AS refund_value,
    s.first_purchase,
    s.last_purchase
FROM summary s
LEFT JOIN customer_refunds r ON r.customer_id = s.customer_id
