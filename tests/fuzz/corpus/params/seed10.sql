SELECT :a ;  ; -- done
/* c */ ;