-- An approval row's run_status says how its run ended (completed, failed,
-- cancelled), whichever service ended it; until then it is the run's status
-- when the row was written (the API shows the run's current status, read
-- from the run). The worker, which ends most runs, may not update approval
-- rows itself (0009): this trigger's function runs as the tables' owner and
-- writes that one column, from the run's own row. Only the end is written:
-- every transition would cost each run two more row versions.
CREATE FUNCTION approvals_follow_run() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE approvals SET run_status = NEW.status
    WHERE run_id = NEW.run_id AND run_status IS DISTINCT FROM NEW.status;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION approvals_follow_run() FROM PUBLIC;
CREATE TRIGGER approvals_follow_run AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
                       AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION approvals_follow_run();
