-- A few suggestions to aggregate; inserted only into an empty bikeways_input.
INSERT INTO bikeways_input (segment, comfort, submitted_at)
SELECT segment, comfort, now() - make_interval(days => days_ago)
FROM (VALUES
    ('Massachusetts Ave: Harvard Sq to Central Sq', 2, 9),
    ('Massachusetts Ave: Harvard Sq to Central Sq', 1, 6),
    ('Massachusetts Ave: Harvard Sq to Central Sq', 2, 1),
    ('Cambridge St: Inman Sq to Lechmere', 3, 5),
    ('Cambridge St: Inman Sq to Lechmere', 2, 2),
    ('Broadway: Kendall Sq to Inman Sq', 4, 3),
    ('Hampshire St: Inman Sq to Kendall Sq', 1, 4)
) AS sample(segment, comfort, days_ago)
WHERE NOT EXISTS (SELECT 1 FROM bikeways_input);
