-- One row per customer with at least one purchase day before the as-of date.
--
-- RFM summary as lifetimes' summary_data_from_transaction_data (and PyMC-Marketing):
--   frequency      = purchase days after the first one (repeat days)
--   recency        = days from the first to the last purchase day
--   T              = days from the first purchase day to the as-of date
--   monetary_value = mean spend on repeat days, 0 without repeat days
-- plus days_since_last_purchase (T - recency, "recency" as marketers mean it),
-- total_spend over all purchase days and refunded value.
--
-- Each customer's first day comes from a grouping joined back rather than a window
-- (min(...) OVER (PARTITION BY customer_id)): a window over whole partitions holds all of
-- its input in memory at once, which a run over a large history cannot afford.
WITH firsts AS (
    SELECT customer_id, min(purchase_day) AS first_day
    FROM daily_purchases
    GROUP BY customer_id
),
summary AS (
    SELECT
        d.customer_id,
        count(*) - 1 AS frequency,
        min(d.purchase_day) AS first_purchase,
        max(d.purchase_day) AS last_purchase,
        sum(d.spend) AS total_spend,
        coalesce(sum(CASE WHEN d.purchase_day > f.first_day THEN d.spend END), 0) AS repeat_spend
    FROM daily_purchases d
    JOIN firsts f ON f.customer_id = d.customer_id
    GROUP BY d.customer_id
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
