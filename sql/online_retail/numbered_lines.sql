-- Every invoice line, numbered within its group of exact duplicates (`copy` = 1 for the
-- first). Nothing is filtered here: the validate step that follows sets lines aside with a
-- reason, so every line of the export is accounted for.
SELECT
    invoice_no,
    stock_code,
    description,
    quantity,
    invoiced_at,
    unit_price,
    customer_id,
    country,
    row_number() OVER (
        PARTITION BY invoice_no, stock_code, description, quantity, invoiced_at,
                     unit_price, customer_id, country
        ORDER BY invoice_no
    ) AS copy
FROM invoice_lines
