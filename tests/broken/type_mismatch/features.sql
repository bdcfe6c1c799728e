SELECT customer_id, count(*) AS orders, sum(amount) AS spend, avg(country) AS typical_country
FROM purchases
GROUP BY customer_id
