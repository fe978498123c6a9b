DROP TABLE course_tables;
DROP TABLE choose_courses;
DROP TABLE courses;
