-- The elements of a JSON array, for the statements that write a batch of
-- rows passed as one jsonb parameter. jsonb_array_elements() and
-- jsonb_to_recordset() are estimated at 100 rows, which makes the planner
-- hash a whole table rather than probe its index for a batch of a few rows
-- (until the table is far bigger than 100 probes). This function tells it
-- 10; STRICT keeps it from being inlined, which would lose that.
CREATE FUNCTION sluice_batch(rows jsonb) RETURNS SETOF jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 10
    AS 'SELECT jsonb_array_elements(rows)';
