SELECT customer_id,
       count(*) AS orders,
       sum(amount) AS spend,
       count(*) - 1 AS frequency,
       CAST(10 AS BIGINT) AS recency,
       CAST(20 AS BIGINT) AS "T",
       avg(amount) AS monetary_value,
       country
FROM purchases
GROUP BY customer_id, country
