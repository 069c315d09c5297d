SELECT E'a'
'\'', :x