-- An approval row is written at its pause (a required one), again at the
-- decision and once more when its run ends (0014): room on its page for the
-- new versions keeps those updates off the table's eight indexes (HOT).
ALTER TABLE approvals SET (fillfactor = 80);
