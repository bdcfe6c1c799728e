SELECT customer_id, count(*) AS orders, sum(amount) AS spend
FROM purchase
GROUP BY customer_id
