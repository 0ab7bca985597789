-- Runs once, when the Postgres volume is first created. The services would create their
-- databases themselves; doing it here makes the layout visible.
create database dtp;
create database webdb;
