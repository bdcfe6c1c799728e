SELECT customer_id, count(*) AS orders, sum(amout) AS spend
FROM purchases
GROUP BY customer_id
